package console

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isp-box/isp-box/internal/status"
)

var updatePeers = flag.Bool("update-peers", false, "rewrite testdata/peers*.golden")

// The seed setup's two lines, as `sip show peers` showed them.
func seedRows() []status.Peer {
	return []status.Peer{
		{Name: "pap2t-ispmodem", Username: "pap2t-ispmodem", Host: netip.MustParseAddr("10.1.8.112"), Port: 5060, Dynamic: true,
			ForceRport: "No", Comedia: "No", Status: "OK (6 ms)", Monitored: true, Online: true, Type: "friend",
			Context: "default", SecretSet: true, DirectMedia: true, Codecs: []string{"ulaw"}, UserAgent: "Linksys/SPA2102-5.2.5",
			Contact: "sip:pap2t-ispmodem@10.1.8.112:5060", QualifyMS: 200, QualifyFreq: 60000, RTTMS: 6, MaxForwards: 70,
			Expires: time.Date(2026, 1, 1, 12, 58, 20, 0, time.UTC)},
		{Name: "pap2t-client", Username: "pap2t-client", Host: netip.MustParseAddr("10.1.8.112"), Port: 5061, Dynamic: true,
			ForceRport: "No", Comedia: "No", Status: "OK (7 ms)", Monitored: true, Online: true, Type: "friend"},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updatePeers {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s (-want +got):\n%s", name, d)
	}
}

func TestRenderPeers(t *testing.T) {
	tests := []struct {
		name string
		rows []status.Peer
	}{
		{"peers_seed.golden", seedRows()},
		{"peers_mixed.golden", []status.Peer{
			{Name: "zz-unmonitored", Host: netip.MustParseAddr("127.0.0.1"), Port: 5070, ForceRport: "Auto (No)", Comedia: "No", Status: "Unmonitored", Type: "peer", ACL: true, Description: "a description longer than thirty-two characters"},
			{Name: "pap2t-ispmodem", Dynamic: true, ForceRport: "No", Comedia: "No", Status: "UNREACHABLE", Monitored: true, Type: "friend", Host: netip.MustParseAddr("10.1.8.112"), Port: 5060},
			{Name: "a-very-long-peer-name-beyond-25", Username: "user", Dynamic: true, ForceRport: "Auto (Yes)", Comedia: "Auto (No)", Status: "UNKNOWN", Monitored: true},
			{Name: "nobody", Dynamic: true, ForceRport: "Yes", Comedia: "Yes", Status: "Unmonitored"},
			{Name: "lagged", Host: netip.MustParseAddr("::1"), Port: 5060, Status: "LAGGED (250 ms)", Monitored: true, Online: true},
			{Name: "only-a-user", Type: "user", Status: "Unmonitored"},
		}},
		{"peers_empty.golden", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			RenderPeers(&b, tt.rows)
			golden(t, tt.name, b.Bytes())
		})
	}
}

func TestRenderPeer(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	renderPeerAt(&b, seedRows()[0], now)
	golden(t, "peers_show_peer.golden", b.Bytes())
	b.Reset()
	renderPeerAt(&b, status.Peer{Name: "nobody", Status: "UNKNOWN", Type: "friend"}, now)
	golden(t, "peers_show_peer_unregistered.golden", b.Bytes())
}
