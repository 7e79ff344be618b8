package box_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/box"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/logging"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/pbx"
)

// TestPartFailsAtStart: a part that cannot start stops the box with an
// error naming it, after the parts started before it were stopped in
// reverse order, leaving no goroutine behind. Each failure is a real one
// of that part (a file that is not a database, a network without a
// gateway, a peer the PBX refuses, a line config the modem refuses, a
// file where the socket goes, a port taken).
func TestPartFailsAtStart(t *testing.T) {
	tests := []struct {
		part    string
		setup   func(t *testing.T, cfg *config.Config, opts *box.Options)
		want    string   // in the error
		stopped []string // parts stopped, in order
	}{
		{
			part: "store",
			setup: func(t *testing.T, cfg *config.Config, opts *box.Options) {
				opts.Database = filepath.Join(t.TempDir(), "garbage.db")
				if err := os.WriteFile(opts.Database, []byte("not a database, not at all: 100 bytes of text to be sure SQLite reads a header"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: "box: store: open ",
		},
		{
			part:    "network",
			setup:   func(t *testing.T, cfg *config.Config, opts *box.Options) { cfg.Net.Gateway = netip.Addr{} },
			want:    "box: network: netstack: gateway",
			stopped: []string{"store"},
		},
		{
			part: "sip",
			setup: func(t *testing.T, cfg *config.Config, opts *box.Options) {
				cfg.PBX.Peers = append(cfg.PBX.Peers, pbx.Peer{File: "t.conf", Line: 99})
			},
			want:    "box: sip: t.conf:99: peer without a name",
			stopped: []string{"registrations", "network", "store"},
		},
		{
			part:    "lines",
			setup:   func(t *testing.T, cfg *config.Config, opts *box.Options) { cfg.Lines[0].Modem.FlowControl = "xon" },
			want:    `box: lines: ttyUSB0: modem: line ttyUSB0: flow control "xon"`,
			stopped: []string{"sip", "registrations", "network", "store"},
		},
		{
			part: "control socket",
			setup: func(t *testing.T, cfg *config.Config, opts *box.Options) {
				opts.Socket = filepath.Join(testutil.ShortDir(t), "not-a-socket")
				if err := os.WriteFile(opts.Socket, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want:    "box: control socket: console: ",
			stopped: []string{"lines", "sip", "registrations", "network", "store"},
		},
		{
			part: "metrics",
			setup: func(t *testing.T, cfg *config.Config, opts *box.Options) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				cfg.Box.Metrics = netip.MustParseAddrPort(l.Addr().String())
			},
			want:    "address already in use",
			stopped: []string{"control socket", "lines", "sip", "registrations", "network", "store"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.part, func(t *testing.T) {
			testutil.LeakCheck(t)
			cfg := lineConfig(t, "")
			var logs testutil.LogBuffer
			opts := box.Options{Socket: "-", Database: ":memory:", NoSignals: true,
				Log:     logging.New(&logs, logging.Options{Level: slog.LevelDebug}), // debug: each part's "stopped"
				Started: func(*box.Box) { t.Error("the box started") }}
			tt.setup(t, cfg, &opts)
			if tt.part == "metrics" { // after the control socket
				opts.Socket = filepath.Join(testutil.ShortDir(t), "s.sock")
			}
			b, err := box.New(cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err = b.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v; want an error with %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "box: "+tt.part+": ") && !strings.HasPrefix(err.Error(), "box: store: ") {
				t.Errorf("Run: %v; want it to name the part %q", err, tt.part)
			}
			var stopped []string
			for _, m := range regexp.MustCompile(`msg=stopped part="?([a-z ]+?)"?\n`).FindAllStringSubmatch(logs.String(), -1) {
				stopped = append(stopped, m[1])
			}
			if !slices.Equal(stopped, tt.stopped) {
				t.Errorf("stopped %q, want %q\n%s", stopped, tt.stopped, logs.String())
			}
			if strings.Contains(logs.String(), "isp-box stopped") {
				t.Errorf("the box logged isp-box stopped on a failed start (its caller does, with the error):\n%s", logs.String())
			}
		})
	}
}

// TestPartsStopInReverse: a box that started stops every part in reverse
// order of start and says "isp-box stopped" once, leaving no goroutine.
func TestPartsStopInReverse(t *testing.T) {
	testutil.LeakCheck(t)
	cfg := lineConfig(t, "[box]\nmetrics = 127.0.0.1:0\n")
	var logs testutil.LogBuffer
	started := make(chan struct{})
	b, err := box.New(cfg, box.Options{Socket: filepath.Join(testutil.ShortDir(t), "s.sock"), Database: ":memory:", NoSignals: true,
		Log: logging.New(&logs, logging.Options{Level: slog.LevelDebug}), Started: func(*box.Box) { close(started) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the box did not start")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var stopped []string
	for _, m := range regexp.MustCompile(`msg=stopped part="?([a-z ]+?)"?\n`).FindAllStringSubmatch(logs.String(), -1) {
		stopped = append(stopped, m[1])
	}
	if want := []string{"metrics", "control socket", "lines", "sip", "registrations", "network", "store"}; !slices.Equal(stopped, want) {
		t.Errorf("stopped %q, want %q\n%s", stopped, want, logs.String())
	}
	if n := strings.Count(logs.String(), `msg="isp-box stopped"`); n != 1 {
		t.Errorf("isp-box stopped logged %d times, want once:\n%s", n, logs.String())
	}
}

// lineConfig is a box with the ISP modem's peer, the seed's dial plan and
// a line whose device is missing (it stays opening), extra appended.
func lineConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.conf", []byte(fmt.Sprintf(`
[general]
udpbindaddr=127.0.0.1:%d
[pap2t-ispmodem]
type=friend
host=dynamic
secret=x
[default]
exten => _X!,1,Dial(SIP/pap2t-ispmodem,20)
[line ttyUSB0]
device /dev/isp-box-test-missing
peer pap2t-ispmodem
`, testutil.FreeUDPPort(t))+extra), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
