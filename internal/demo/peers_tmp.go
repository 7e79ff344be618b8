package demo

import (
	"fmt"
	"io"

	"github.com/isp-box/isp-box/internal/console"
)

// renderPeers is replaced by console.RenderPeers once it lands.
func renderPeers(w io.Writer, rows []console.PeerRow) {
	for _, r := range rows {
		fmt.Fprintf(w, "%s %s:%d %s\n", r.Name, r.Host, r.Port, r.Status)
	}
}
