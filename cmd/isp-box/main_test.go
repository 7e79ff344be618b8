package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/status"
	"github.com/isp-box/isp-box/internal/testutil"
)

func runCmd(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb testutil.LogBuffer
	code = run(ctx, &env{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			for _, h := range []string{"--help", "-h"} {
				code, out, errs := runCmd(t.Context(), c.name, h)
				if code != 0 || errs != "" {
					t.Errorf("%s %s: exit %d, stderr %q", c.name, h, code, errs)
				}
				if !strings.HasPrefix(out, "Usage: isp-box "+c.name) {
					t.Errorf("%s %s: usage starts %q", c.name, h, firstLine(out))
				}
			}
		})
	}
	code, out, _ := runCmd(t.Context(), "--help")
	if code != 0 || !strings.Contains(out, "check-config") {
		t.Errorf("isp-box --help: exit %d, %q", code, out)
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		errLine string
	}{
		{nil, "isp-box replaces Asterisk + mgetty + pppd for a dial-up ISP: one binary,"},
		{[]string{"frobnicate"}, `isp-box: unknown command "frobnicate"; commands: calls, check-config, completion, console, demo, doctor, lines, man, peer, peers, registry, reload, serve, sessions, sim-ata, status, unban, version`},
		{[]string{"lines", "--bogus"}, "isp-box: lines: flag provided but not defined: -bogus"},
		{[]string{"lines", "extra"}, `isp-box: lines: unexpected argument "extra"`},
		{[]string{"peer"}, "isp-box: peer: missing argument"},
		{[]string{"check-config"}, "isp-box: check-config: missing argument"},
		{[]string{"sim-ata"}, "isp-box: sim-ata: -c FILE is required"},
	}
	for _, tt := range tests {
		code, _, errs := runCmd(t.Context(), tt.args...)
		if code != 2 || firstLine(errs) != tt.errLine {
			t.Errorf("isp-box %v: exit %d, first stderr line %q; want 2, %q", tt.args, code, firstLine(errs), tt.errLine)
		}
	}
}

// TestNoDaemon: every command that needs the daemon says in one line which
// socket it tried, and exits 1.
func TestNoDaemon(t *testing.T) {
	sock := filepath.Join(testutil.ShortDir(t), "none", "isp-box.sock")
	want := "isp-box: no daemon at " + sock + `: no such file or directory (is "isp-box serve" running?)` + "\n"
	for _, args := range [][]string{
		{"status"}, {"peers"}, {"peer", "x"}, {"calls"}, {"lines"}, {"sessions"}, {"console"}, {"reload"},
		{"lines", "--json"},
	} {
		code, out, errs := runCmd(t.Context(), append(args, "-s", sock)...)
		if code != 1 || errs != want || out != "" {
			t.Errorf("isp-box %v: exit %d, stdout %q, stderr %q; want 1 and %q", args, code, out, errs, want)
		}
	}
	// version works without a daemon.
	if code, out, errs := runCmd(t.Context(), "version", "-s", sock); code != 0 || errs != "" || !strings.HasPrefix(out, "isp-box ") || strings.Contains(out, "daemon") {
		t.Errorf("version without daemon: exit %d, %q, %q", code, out, errs)
	}
}

var t0 = time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)

var fixture = console.Status{
	Version: "test-9", Started: t0, Config: "examples/pap2t.conf", Network: "userspace", SIPAddr: "0.0.0.0:5060",
	Peers: []status.Peer{{Name: "pap2t-client", Host: netip.MustParseAddr("192.168.1.50"), Port: 5061, Dynamic: true, Status: "OK (7 ms)", Online: true, Monitored: true}},
	Calls: []status.Call{{ID: "00000002", From: "pap2t-client", Exten: "88567682", To: "pap2t-ispmodem", State: "up", Start: t0}},
	Lines: []status.Line{{Name: "ttyUSB0", Device: "/dev/ttyUSB0", Peer: "pap2t-ispmodem", State: "down", Since: t0,
		LastError: "open /dev/ttyUSB0: no such file or directory"}},
	Sessions: []console.Session{{Session: status.Session{ID: "ppp1", Line: "ttyUSB0", User: "dial", Phase: "running", Start: t0, BytesIn: 2048}}},
	Counters: []console.Counter{{Name: "sip.auth_failed", Value: 2}},
}

type testDaemon struct {
	sock string
	bus  *bus.Bus
}

func startDaemon(t *testing.T, reload func(context.Context) error) *testDaemon {
	t.Helper()
	return startDaemonWith(t, fixture, reload)
}

// startDaemonWith serves st as the daemon's status.
func startDaemonWith(t *testing.T, st console.Status, reload func(context.Context) error) *testDaemon {
	t.Helper()
	d := &testDaemon{sock: filepath.Join(testutil.ShortDir(t), "isp-box.sock"), bus: bus.New(nil)}
	l, err := console.Listen(d.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := console.NewServer(console.ServerOptions{
		Status:  func(context.Context) console.Status { return st },
		Bus:     d.bus,
		Reload:  reload,
		Version: "test-9",
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, console.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return d
}

func TestStatusCommands(t *testing.T) {
	d := startDaemon(t, nil)
	render := func(f func(*bytes.Buffer) error) string {
		var b bytes.Buffer
		if err := f(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"lines"}, render(func(b *bytes.Buffer) error { return console.RenderLines(b, fixture.Lines) })},
		{[]string{"calls"}, render(func(b *bytes.Buffer) error { return console.RenderCalls(b, fixture.Calls) })},
		{[]string{"sessions"}, render(func(b *bytes.Buffer) error { return console.RenderSessions(b, fixture.Sessions) })},
		{[]string{"peers"}, render(func(b *bytes.Buffer) error { console.RenderPeers(b, fixture.Peers); return nil })},
		{[]string{"peer", "pap2t-client"}, render(func(b *bytes.Buffer) error { console.RenderPeer(b, fixture.Peers[0]); return nil })},
	}
	for _, tt := range tests {
		code, out, errs := runCmd(t.Context(), append(tt.args, "-s", d.sock)...)
		if code != 0 || errs != "" {
			t.Errorf("%v: exit %d, stderr %q", tt.args, code, errs)
		}
		if diff := cmp.Diff(tt.want, out); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tt.args, diff)
		}
	}

	// --json prints the part of Status the table shows.
	jsonTests := []struct {
		args []string
		got  any
		want any
	}{
		{[]string{"lines", "--json"}, &[]status.Line{}, &fixture.Lines},
		{[]string{"calls", "--json"}, &[]status.Call{}, &fixture.Calls},
		{[]string{"sessions", "--json"}, &[]console.Session{}, &fixture.Sessions},
		{[]string{"peers", "--json"}, &[]status.Peer{}, &fixture.Peers},
		{[]string{"peer", "--json", "pap2t-client"}, &status.Peer{}, &fixture.Peers[0]},
		{[]string{"status", "--json"}, &console.Status{}, &fixture},
	}
	for _, tt := range jsonTests {
		code, out, errs := runCmd(t.Context(), append([]string{tt.args[0], "-s", d.sock}, tt.args[1:]...)...)
		if code != 0 || errs != "" {
			t.Fatalf("%v: exit %d, stderr %q", tt.args, code, errs)
		}
		if err := json.Unmarshal([]byte(out), tt.got); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if st, ok := tt.got.(*console.Status); ok {
			st.Bus = console.BusStats{} // filled by the server from its bus
		}
		if diff := cmp.Diff(tt.want, tt.got, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tt.args, diff)
		}
	}

	code, out, _ := runCmd(t.Context(), "status", "-s", d.sock)
	for _, want := range []string{"isp-box test-9, up ", "config:   examples/pap2t.conf", "peers:    1 (1 online)", "sip.auth_failed  2", "SUBSCRIBER"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	if code, _, errs := runCmd(t.Context(), "peer", "-s", d.sock, "nobody"); code != 1 || errs != "isp-box: peer nobody not found\n" {
		t.Errorf("peer nobody: exit %d, %q", code, errs)
	}
	if code, out, _ := runCmd(t.Context(), "version", "-s", d.sock); code != 0 || !strings.Contains(out, "daemon: isp-box test-9 (") {
		t.Errorf("version with daemon: exit %d, %q", code, out)
	}
}

func TestReloadCommand(t *testing.T) {
	tests := []struct {
		name   string
		reload func(context.Context) error
		code   int
		out    string
		err    string
	}{
		{"ok", func(context.Context) error { return nil }, 0, "config reloaded\n", ""},
		{"refused", func(context.Context) error { return errors.New("a.conf:3: unknown key \"x\"\na.conf:9: bad value") }, 1, "",
			"isp-box: reload refused:\na.conf:3: unknown key \"x\"\na.conf:9: bad value\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startDaemon(t, tt.reload)
			code, out, errs := runCmd(t.Context(), "reload", "-s", d.sock)
			if code != tt.code || out != tt.out || errs != tt.err {
				t.Errorf("reload: exit %d, %q, %q; want %d, %q, %q", code, out, errs, tt.code, tt.out, tt.err)
			}
		})
	}
}

func TestConsoleCommand(t *testing.T) {
	d := startDaemon(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb testutil.LogBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, &env{stdout: &out, stderr: &errb}, []string{"console", "-s", d.sock}) }()
	// Publish until the stream has shown an event: the console subscribes
	// on its own time, and the bus is lossy for it by design.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "Line ttyUSB0 is now idle") {
		if time.Now().After(deadline) {
			t.Fatalf("no event shown; output:\n%s\nstderr: %s", out.String(), errb.String())
		}
		d.bus.Publish(bus.LineState{Line: "ttyUSB0", State: "idle"})
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("console exit %d, stderr %q", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.HasPrefix(lines[0], "Connected to isp-box test-9 currently running (pid = ") || !strings.HasSuffix(lines[0], " on "+d.sock) {
		t.Errorf("first line %q", lines[0])
	}
	if l := lines[1]; !strings.HasPrefix(l, "  == Event bus: ") || !strings.Contains(l, " events published") {
		t.Errorf("bus line %q", l)
	}
	if l := lines[2]; !strings.Contains(l, "] line.state        == Line ttyUSB0 is now idle") {
		t.Errorf("event line %q", l)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("[general]\nudpbindaddr = 0.0.0.0:5060\nno-such-key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t.Context(), "check-config", bad)
	if code != 1 || out != "" || !strings.HasPrefix(errs, bad+":3: unknown key") || !strings.HasSuffix(errs, "isp-box: "+bad+": 1 problem\n") {
		t.Errorf("check-config bad.conf: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = runCmd(t.Context(), "check-config", filepath.Join(dir, "missing.conf"))
	if code != 1 || !strings.Contains(errs, "missing.conf") {
		t.Errorf("check-config missing.conf: exit %d, %q", code, errs)
	}
	example := filepath.Join("..", "..", "examples", "pap2t.conf")
	if _, err := os.Stat(example); err != nil {
		t.Skipf("no %s: %v", example, err)
	}
	code, out, errs = runCmd(t.Context(), "check-config", example)
	if code != 0 || out == "" {
		t.Errorf("check-config %s: exit %d, stdout %q, stderr %q", example, code, out, errs)
	}
	if code, out, _ := runCmd(t.Context(), "check-config", "-q", example); code != 0 || out != "" {
		t.Errorf("check-config -q: exit %d, %q", code, out)
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); v == "" {
		t.Error("empty version")
	}
	old := version
	version = "v1.2.3"
	defer func() { version = old }()
	if v := Version(); v != "v1.2.3" {
		t.Errorf("Version = %q with -X main.version=v1.2.3", v)
	}
	if code, out, _ := runCmd(t.Context(), "--version", "-s", filepath.Join(testutil.ShortDir(t), "x.sock")); code != 0 || out != "isp-box v1.2.3\n" {
		t.Errorf("--version: %d %q", code, out)
	}
}

func TestBusLine(t *testing.T) {
	tests := []struct {
		in   console.BusStats
		want string
	}{
		{console.BusStats{}, "  == Event bus: 0 events published"},
		{console.BusStats{Published: 9, Subscribers: []bus.SubStats{
			{Name: "console pid 7", Dropped: 3}, {Name: "store", Reliable: true, Queued: 1, HighWater: 4}}},
			"  == Event bus: 9 events published; console pid 7: lossy, 3 dropped; store: reliable, 1 queued (high water 4)"},
	}
	for _, tt := range tests {
		if got := busLine(tt.in); got != tt.want {
			t.Errorf("busLine = %q, want %q", got, tt.want)
		}
	}
}

func TestHistoryCommands(t *testing.T) {
	sock := filepath.Join(testutil.ShortDir(t), "isp-box.sock")
	l, err := console.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	h := console.History{
		Calls:    []bus.CallEnded{{CallID: "00000001", From: "pap2t-client", To: "88567682", Start: t0, End: t0.Add(time.Minute), Status: "ANSWER", SIPCode: 200}},
		Sessions: []bus.PPPDown{{Session: "ppp1", Line: "ttyUSB0", User: "dial", Start: t0, End: t0.Add(time.Hour), Cause: "carrier lost"}},
	}
	var asked int
	srv := console.NewServer(console.ServerOptions{History: func(_ context.Context, n int) (console.History, error) { asked = n; return h, nil }})
	go srv.Serve(l)
	defer srv.Close()

	want := localHistory(h)
	render := func(f func(*bytes.Buffer) error) string {
		var b bytes.Buffer
		f(&b)
		return b.String()
	}
	tests := []struct {
		args  []string
		asked int
		want  string
	}{
		{[]string{"calls", "--history"}, console.DefaultHistory, render(func(b *bytes.Buffer) error { return console.RenderCallRecords(b, want.Calls) })},
		{[]string{"sessions", "--history", "-n", "3"}, 3, render(func(b *bytes.Buffer) error { return console.RenderSessionRecords(b, want.Sessions) })},
	}
	for _, tt := range tests {
		code, out, errs := runCmd(t.Context(), append(tt.args, "-s", sock)...)
		if code != 0 || errs != "" || asked != tt.asked {
			t.Errorf("%v: exit %d, stderr %q, asked for %d records; want %d", tt.args, code, errs, asked, tt.asked)
		}
		if d := cmp.Diff(tt.want, out); d != "" {
			t.Errorf("%v (-want +got):\n%s", tt.args, d)
		}
	}
	code, out, _ := runCmd(t.Context(), "calls", "--history", "--json", "-s", sock)
	var got []bus.CallEnded
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got) != 1 || got[0].CallID != "00000001" {
		t.Errorf("calls --history --json: exit %d, %v, %q", code, err, out)
	}
	if code, _, errs := runCmd(t.Context(), "calls", "--history", "-n", "0", "-s", sock); code != 2 || !strings.Contains(errs, "-n 0: want 1 to") {
		t.Errorf("-n 0: exit %d, %q", code, errs)
	}
	if code, _, _ := runCmd(t.Context(), "lines", "--history", "-s", sock); code != 2 {
		t.Errorf("lines --history: exit %d, want 2 (no such flag)", code)
	}
}
