package console

import (
	"fmt"
	"io"

	"github.com/isp-box/isp-box/internal/status"
)

// RenderRegistry prints the outbound registrations as chan_sip's
// `sip show registry` does (FORMAT2/FORMAT in sip_show_registry), with
// the last error of a failing one under it.
func RenderRegistry(w io.Writer, rows []status.Registration) error {
	const format = "%-39.39s %-6.6s %-12.12s  %8s %-20.20s %-25.25s\n"
	fmt.Fprintf(w, format, "Host", "dnsmgr", "Username", "Refresh", "State", "Reg.Time")
	for _, r := range rows {
		when := ""
		if !r.RegTime.IsZero() {
			when = r.RegTime.Format("Mon, 02 Jan 2006 15:04:05")
		}
		fmt.Fprintf(w, format, r.Host, "N", r.Username, fmt.Sprint(r.Refresh), r.State, when)
		if r.LastError != "" && r.State != "Registered" {
			fmt.Fprintf(w, "    last error: %s (%d failed in a row)\n", r.LastError, r.Attempts)
		}
	}
	_, err := fmt.Fprintf(w, "%d SIP registrations.\n", len(rows))
	return err
}
