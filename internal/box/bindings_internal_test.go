package box

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/store"
	"github.com/isp-box/isp-box/pbx"
)

// TestBindingWriter: a burst of REGISTERs of one peer returns at once and
// ends as the last binding in the database; a delete after a save wins;
// close writes what is pending.
func TestBindingWriter(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := newBindingWriter(bindingStore{st}, slog.New(slog.DiscardHandler))
	src := netip.MustParseAddrPort("127.0.0.1:5061")
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 500; i++ {
				_ = w.SaveBinding(t.Context(), pbx.Binding{Peer: "line1", Contact: "sip:line1@127.0.0.1:5061", Source: src, CSeq: uint32(i), Expires: exp})
			}
		}()
	}
	wg.Wait()
	_ = w.SaveBinding(t.Context(), pbx.Binding{Peer: "line1", Contact: "sip:line1@127.0.0.1:5061", Source: src, CSeq: 1000, Expires: exp})
	_ = w.SaveBinding(t.Context(), pbx.Binding{Peer: "line2", Contact: "sip:line2@127.0.0.1:5062", Source: src, CSeq: 1, Expires: exp})
	_ = w.DeleteBinding(t.Context(), "line2")
	w.close()
	got, err := bindingStore{st}.LoadBindings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Peer != "line1" || got[0].CSeq != 1000 || !got[0].Expires.Equal(exp) {
		t.Fatalf("bindings after close: %+v", got)
	}
}
