package console

import (
	"bytes"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/status"
)

// -update-render rewrites the render golden files (named apart from any
// -update flag of other tests in this package).
var updateRender = flag.Bool("update-render", false, "rewrite testdata/*.golden of the renderers")

var now = time.Date(2026, 11, 27, 15, 30, 0, 0, time.UTC)

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name   string
		render func(w io.Writer) error
	}{
		{"calls", func(w io.Writer) error {
			return renderCalls(w, []status.Call{
				{ID: "00000002", From: "pap2t-client", Exten: "88567682", To: "pap2t-ispmodem", State: "up",
					Start: now.Add(-62*time.Minute - 3*time.Second), Answer: now.Add(-62 * time.Minute), MediaMode: "direct", Codec: "PCMU"},
				{ID: "00000003", From: "pap2t-client", Exten: "5551234", To: "pap2t-ispmodem", State: "ringing",
					Start: now.Add(-4 * time.Second), MediaMode: "relay", Codec: "PCMA", Packets: 1234, Lost: 2, JitterMS: 3.25},
			}, now)
		}},
		{"calls-empty", func(w io.Writer) error { return renderCalls(w, nil, now) }},
		{"calls-one", func(w io.Writer) error {
			return renderCalls(w, []status.Call{{ID: "00000009", From: "pap2t-client", Exten: "1", State: "routing", Start: now}}, now)
		}},
		{"lines", func(w io.Writer) error {
			return renderLines(w, []status.Line{
				{Name: "ttyUSB0", Device: "/dev/ttyUSB0", Peer: "pap2t-ispmodem", State: "connected", Since: now.Add(-5 * time.Minute),
					LastConnect: "CONNECT 28800/ARQ/V34/LAPM/V42BIS", Session: "ppp1", CallID: "00000002", Answered: 3, Caps: "modem-lines",
					Pending: "config reloaded; applies when the call ends"},
				{Name: "ttyUSB1", Device: "/dev/ttyUSB1", State: "down", Since: now.Add(-2 * time.Hour), Errors: 17,
					LastError: "open /dev/ttyUSB1: no such file or directory (retrying every 5s)"},
				{Name: "sim0", Device: "/dev/pts/7", Peer: "sim", State: "idle", Since: now.Add(-30 * time.Second), Caps: "pty (no DCD/DTR)"},
				{Name: "ttyUSB2", Device: "/dev/ttyUSB2", State: "opening", Since: now.Add(-time.Minute), Errors: 1,
					LastError: "modem: open /dev/ttyUSB2: permission denied (user isp-box is not allowed to open it: add it to group dialout, e.g. usermod -aG dialout isp-box, then restart the box; isp-box doctor checks this)"},
			}, now)
		}},
		{"lines-call", func(w io.Writer) error {
			return renderLines(w, []status.Line{
				{Name: "ttyUSB0", Device: "/dev/ttyUSB0", Peer: "pap2t-ispmodem", State: "connected", Since: now.Add(-5 * time.Minute),
					LastConnect: "CONNECT 28800/ARQ/V34/LAPM/V42BIS", Speed: 28800, Protocol: "ARQ/V34/LAPM/V42BIS", CallerID: "5551234",
					User: "dial", Session: "ttyUSB0/3", CallID: "00000002", Answered: 3},
				{Name: "tcp0", Device: "tcp :2323", State: "idle", Since: now.Add(-time.Hour)},
			}, now)
		}},
		{"lines-empty", func(w io.Writer) error { return renderLines(w, nil, now) }},
		{"sessions", func(w io.Writer) error {
			return renderSessions(w, []Session{
				{Session: status.Session{ID: "ppp1", Line: "ttyUSB0", User: "dial", Phase: "running", Local: netip.MustParseAddr("192.168.32.1"),
					Remote: netip.MustParseAddr("192.168.32.105"), Auth: "PAP", Start: now.Add(-754 * time.Second), BytesIn: 1234567,
					BytesOut: 89, PktsIn: 1500, PktsOut: 3, VJ: true}},
				{Session: status.Session{ID: "ppp2", Line: "ttyUSB1", Phase: "establish", Start: now.Add(-2 * time.Second)}},
			}, now)
		}},
		{"sessions-errors", func(w io.Writer) error {
			return renderSessions(w, []Session{
				{Session: status.Session{ID: "ppp1", Line: "ttyUSB0", User: "dial", Phase: "running", Local: netip.MustParseAddr("192.168.32.1"),
					Remote: netip.MustParseAddr("192.168.32.105"), Auth: "pap", Start: now.Add(-754 * time.Second), BytesIn: 1234567,
					BytesOut: 89, PktsIn: 1500, PktsOut: 3, FCSErrs: 12, Dropped: 4}},
				{Session: status.Session{ID: "ppp2", Line: "ttyUSB1", Phase: "establish", Start: now.Add(-2 * time.Second)}},
			}, now)
		}},
		{"sessions-empty", func(w io.Writer) error { return renderSessions(w, nil, now) }},
		{"sessions-caller", func(w io.Writer) error {
			return renderSessions(w, []Session{
				{Session: status.Session{ID: "ppp3", Line: "tcp0:1", CallerID: "198.51.100.7:40001", User: "dial", Phase: "running",
					Local: netip.MustParseAddr("192.168.32.1"), Remote: netip.MustParseAddr("192.168.32.2"), Auth: "pap",
					Start: now.Add(-30 * time.Second)}},
				{Session: status.Session{ID: "ppp2", Line: "ttyUSB1", Phase: "establish", Start: now.Add(-2 * time.Second)}},
			}, now)
		}},
		{"registry", func(w io.Writer) error {
			return RenderRegistry(w, []status.Registration{
				{Host: "sip.provider.example:5060", Username: "5551000", Extension: "5551000", Refresh: 105, State: "Registered", RegTime: now.Add(-15 * time.Second)},
				{Host: "127.0.0.1:5080", Username: "881", Refresh: 0, State: "Timeout", LastError: "REGISTER to 127.0.0.1:5080: no answer", Attempts: 3},
			})
		}},
		{"sessions-radius", func(w io.Writer) error {
			return renderSessions(w, []Session{
				{Session: status.Session{ID: "3f2a9c01d4e5b677", Line: "ttyUSB0", User: "alice", Phase: "running",
					Local: netip.MustParseAddr("192.168.32.1"), Remote: netip.MustParseAddr("192.168.32.77"),
					Auth: "mschap-v2", Start: now.Add(-75 * time.Second), BytesIn: 4000, BytesOut: 9000, PktsIn: 40, PktsOut: 50,
					AAA: "radius"}, Acct: "2 queued: timeout"},
				{Session: status.Session{ID: "5b0c", Line: "ttyUSB1", User: "dial", Phase: "running", Auth: "pap", AAA: "file",
					Start: now.Add(-2 * time.Second)}, Acct: "start sent"},
			}, now)
		}},
		{"bus", func(w io.Writer) error {
			return RenderBus(w, BusStats{Published: 123456, Subscribers: []bus.SubStats{
				{Name: "store", Reliable: true, Delivered: 40, Queued: 2, HighWater: 17},
				{Name: "console pid 4242", Delivered: 100000, Dropped: 23456, Queued: 256},
				{Name: "pbx line state", Delivered: 12},
			}})
		}},
		{"call-records", func(w io.Writer) error {
			return RenderCallRecords(w, []bus.CallEnded{
				{CallID: "00000002", SIPID: "x@y", From: "pap2t-client", To: "88567682", Callee: "pap2t-ispmodem",
					Start: now.Add(-time.Hour), Answer: now.Add(-time.Hour + 7*time.Second), End: now.Add(-20 * time.Minute),
					Status: "ANSWER", SIPCode: 200, HangupBy: "caller", MediaMode: "direct", Codec: "PCMU"},
				{CallID: "00000001", From: "pap2t-client", To: "5551234", Start: now.Add(-2 * time.Hour), End: now.Add(-2*time.Hour + 20*time.Second),
					Status: "NOANSWER", SIPCode: 480, HangupBy: "box"},
			})
		}},
		{"call-records-empty", func(w io.Writer) error { return RenderCallRecords(w, nil) }},
		{"session-records", func(w io.Writer) error {
			return RenderSessionRecords(w, []bus.PPPDown{
				{Session: "ppp1", Line: "ttyUSB0", User: "dial", Remote: netip.MustParseAddr("192.168.32.105"),
					Start: now.Add(-time.Hour), End: now.Add(-20 * time.Minute), BytesIn: 3 << 20, BytesOut: 45 << 20,
					PktsIn: 20000, PktsOut: 40000, Cause: "carrier lost", CallID: "00000002", CallerID: "pap2t-client"},
				{Session: "ppp2", Line: "tcp0:3", User: "dial", Remote: netip.MustParseAddr("192.168.32.7"),
					Start: now.Add(-time.Hour), End: now.Add(-50 * time.Minute), Cause: "peer terminated", CallerID: "198.51.100.7:40001"},
				{Session: "ppp0", Line: "ttyUSB0", Start: now.Add(-3 * time.Hour), End: now.Add(-3*time.Hour + 30*time.Second), Cause: "authentication failed"},
			})
		}},
		{"counters", func(w io.Writer) error {
			return RenderCounters(w, []Counter{{"sip.auth_failed", 3}, {"net.spoofed", 0}, {"hdlc.fcs_errors", 12}})
		}},
		{"events", func(w io.Writer) error {
			zone := time.FixedZone("CET", 3600)
			at := func(s int) time.Time { return now.Add(time.Duration(s) * 1500 * time.Millisecond).In(zone) }
			for i, ev := range []bus.Event{
				bus.PeerRegistered{Peer: "pap2t-client", Addr: mustAddrPort("192.168.1.50:5061"), UserAgent: "Linksys/PAP2T-5.1.6(LS)"},
				bus.CallStarted{CallID: "00000002", From: "pap2t-client", Exten: "88567682", Context: "default", Target: "pap2t-ispmodem"},
				bus.LineState{Line: "ttyUSB0", State: "answering", Detail: "ATA"},
				bus.ModemConnected{Line: "ttyUSB0", Result: "CONNECT 28800/ARQ/V34/LAPM/V42BIS"},
				bus.AuthFailed{Source: mustAddrPort("203.0.113.9:5060"), User: "admin", Method: "REGISTER", Reason: "wrong password"},
			} {
				if err := RenderEvent(w, EventLine{Seq: uint64(i + 1), Time: at(i), Kind: ev.Kind(), Text: eventText(ev)}); err != nil {
					return err
				}
			}
			if err := RenderEvent(w, EventLine{Time: at(5), Dropped: 17}); err != nil {
				return err
			}
			return RenderEvent(w, EventLine{Time: at(6), Dropped: 1})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.render(&buf); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.name+".golden")
			if *updateRender {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update-render to create it)", err)
			}
			if d := cmp.Diff(string(want), buf.String()); d != "" {
				t.Errorf("%s (-want +got):\n%s", path, d)
			}
		})
	}
}

func TestSizeIEC(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {1 << 20, "1.0 MiB"},
		{5 << 30, "5.0 GiB"}, {1<<64 - 1, "16.0 EiB"},
	}
	for _, tt := range tests {
		if got := sizeIEC(tt.n); got != tt.want {
			t.Errorf("sizeIEC(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestClockDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0:00"}, {59 * time.Second, "0:59"}, {61 * time.Second, "1:01"}, {time.Hour, "1:00:00"},
		{100*time.Hour + 2*time.Minute + 3*time.Second, "100:02:03"}, {-time.Second, "-"},
	}
	for _, tt := range tests {
		if got := clockDuration(tt.d); got != tt.want {
			t.Errorf("clockDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
