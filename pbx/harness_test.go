package pbx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

const (
	ispLine    = "pap2t-ispmodem"
	clientLine = "pap2t-client"
	secret     = "password"
)

// testConfig is the seed setup: two PAP2T lines, _X! -> the ISP line.
func testConfig(dial string) Config {
	cfg := DefaultConfig()
	cfg.General.UDPBindAddr = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.General.RTPStart, cfg.General.RTPEnd = 30000, 31000
	for i, n := range []string{ispLine, clientLine} {
		p := DefaultPeer(n)
		p.Secret, p.Host, p.NAT, p.Qualify = secret, "dynamic", "no", 0
		p.RegExten = strconv.Itoa(881 + i)
		p.File, p.Line = "sip.conf", 1+10*i
		cfg.Peers = append(cfg.Peers, p)
	}
	if dial == "" {
		dial = "Dial(SIP/" + ispLine + ", 20)"
	}
	cfg.Dialplan = []dialplan.Line{{Context: "default", Key: "exten", Value: "_X!,1," + dial, File: "extensions.conf", Line: 1}}
	return cfg
}

// events records everything published on a bus.
type events struct {
	mu  sync.Mutex
	evs []bus.Event
	ch  chan struct{}
}

func recordEvents(t *testing.T, b *bus.Bus) *events {
	e := &events{ch: make(chan struct{}, 1)}
	sub := b.SubscribeReliable("test", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for env := range sub.C() {
			e.mu.Lock()
			e.evs = append(e.evs, env.Event)
			e.mu.Unlock()
			select {
			case e.ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { sub.Close(); <-done })
	return e
}

// wait returns the first event for which ok is true, waiting up to d.
func (e *events) wait(t *testing.T, d time.Duration, ok func(bus.Event) bool) bus.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		e.mu.Lock()
		for _, ev := range e.evs {
			if ok(ev) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("no matching event within %s", d)
			return nil
		}
	}
}

type testBox struct {
	*Server
	bus    *bus.Bus
	ev     *events
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startBox(t *testing.T, cfg Config, store BindingStore) *testBox {
	t.Helper()
	return startBoxWith(t, cfg, Options{Bindings: store})
}

// startBoxWith is startBox with more of the server's options (its bus
// and log are the test's).
func startBoxWith(t *testing.T, cfg Config, opts Options) *testBox {
	t.Helper()
	b := bus.New(nil)
	ev := recordEvents(t, b)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Getenv("PBX_TEST_QUIET") != "" {
		log = nil
	}
	opts.Bus, opts.Log = b, log
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb := &testBox{Server: s, bus: b, ev: ev, cancel: cancel, done: make(chan error, 1)}
	go func() { tb.done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-tb.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready")
	}
	t.Cleanup(tb.stop)
	return tb
}

func (tb *testBox) stop() {
	tb.once.Do(func() {
		tb.cancel()
		select {
		case <-tb.done:
		case <-time.After(40 * time.Second):
			panic("pbx: Run did not return after cancel")
		}
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// ---- sipp ----

func needSipp(t *testing.T) string {
	t.Helper()
	return testutil.NeedProgram(t, "sip-tester", "sipp")
}

// scenario renders testdata/sipp/<name> with data into the test's temp dir.
func scenario(t *testing.T, name string, data any) string {
	t.Helper()
	tm, err := template.ParseFiles(filepath.Join("testdata", "sipp", "common.tmpl"), filepath.Join("testdata", "sipp", name))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tm.ExecuteTemplate(&buf, name, data); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// scen holds every field the scenario templates use.
type scen struct {
	User, Password, Exten      string
	SDPAddr                    string
	SDPPort                    int
	AnswerAddr                 string
	AnswerPort                 int
	WantAddrRE, WantPTs        string
	WantPort                   int
	CheckSDP, Reinvite         bool
	Code, RingFor, Hold, Delay int
}

func defaults(user string) scen {
	return scen{User: user, Password: secret, Exten: "88567682", SDPAddr: "127.0.0.50", SDPPort: 16384,
		AnswerAddr: "127.0.0.60", AnswerPort: 16482, WantAddrRE: `127\.0\.0\.50`, WantPort: 16384,
		WantPTs: "0 8 100 101", RingFor: 100, Hold: 200}
}

type sippProc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
	dir  string
	port int
}

// startSipp runs sipp on 127.0.0.1:port. remote is the box's address for a
// UAC, "" for a UAS. It returns once the UAS's socket is bound.
func startSipp(t *testing.T, scenarioFile string, port int, remote string, extra ...string) *sippProc {
	t.Helper()
	bin := needSipp(t)
	dir := t.TempDir()
	args := []string{"-sf", scenarioFile, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-m", "1",
		"-timeout", "40s", "-timeout_error", "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log")}
	args = append(args, extra...)
	if remote != "" {
		args = append(args, remote)
	}
	sp := &sippProc{cmd: exec.Command(bin, args...), done: make(chan error, 1), dir: dir, port: port}
	sp.cmd.Dir = dir
	sp.cmd.Stdout, sp.cmd.Stderr = &sp.out, &sp.out
	if err := sp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { sp.done <- sp.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-sp.done:
		default:
			_ = sp.cmd.Process.Kill()
			<-sp.done
		}
	})
	if remote == "" { // wait until sipp holds the port
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-sp.done:
				sp.done <- err
				t.Fatalf("sipp UAS exited: %v\n%s", err, sp.out.String())
			default:
			}
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			if err != nil {
				return sp
			}
			c.Close()
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("sipp UAS did not bind")
	}
	return sp
}

// sippLeg is one side of a sipp call: a scenario template and its data.
type sippLeg struct {
	file string
	data scen
}

// sippCall starts the callee's scenario on calleePort, then the caller's
// towards the box from callerPort; extra goes to both.
func sippCall(t *testing.T, box *testBox, calleePort, callerPort int, callee, caller sippLeg, extra ...string) (uas, uac *sippProc) {
	t.Helper()
	uas = startSipp(t, scenario(t, callee.file, callee.data), calleePort, "", extra...)
	uac = startSipp(t, scenario(t, caller.file, caller.data), callerPort, box.Addr().String(), extra...)
	return uas, uac
}

// waitSipp waits for each sipp in turn, 30 s at most each, and fails the
// test unless each exited 0.
func waitSipp(t *testing.T, ps ...*sippProc) {
	t.Helper()
	for _, sp := range ps {
		sp.wait(t, 30*time.Second)
	}
}

// wait waits for sipp to exit and fails the test unless it exited 0.
func (sp *sippProc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-sp.done:
		sp.done <- err
		if err != nil {
			errs, _ := os.ReadFile(filepath.Join(sp.dir, "errors.log"))
			msgs, _ := os.ReadFile(filepath.Join(sp.dir, "messages.log"))
			t.Fatalf("sipp %s: %v\nerrors:\n%s\nmessages:\n%s", filepath.Base(sp.cmd.Args[2]), err, errs, tail(msgs, 6000))
		}
	case <-time.After(d):
		_ = sp.cmd.Process.Kill()
		msgs, _ := os.ReadFile(filepath.Join(sp.dir, "messages.log"))
		t.Fatalf("sipp %s did not finish within %s\nmessages:\n%s", filepath.Base(sp.cmd.Args[2]), d, tail(msgs, 6000))
	}
}

func (sp *sippProc) kill() {
	_ = sp.cmd.Process.Kill()
	err := <-sp.done
	sp.done <- err
}

func (sp *sippProc) messages() string {
	b, _ := os.ReadFile(filepath.Join(sp.dir, "messages.log"))
	return string(b)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// serve runs s until the test ends (and checks it stops cleanly), and
// returns once it serves.
func serve(t testing.TB, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("Run ended before serving: %v", err)
	}
}

// sippBox is a box on the test config with both lines registered by
// sipp; it skips without sipp.
func sippBox(t *testing.T) (box *testBox, ispPort, cliPort int) {
	t.Helper()
	needSipp(t)
	box = startBox(t, testConfig(""), nil)
	ispPort, cliPort = registerBoth(t, box)
	return box, ispPort, cliPort
}

// registerBoth registers the ISP and the client line with sipp, each
// from a free port of its own, and returns the two ports.
func registerBoth(t *testing.T, box *testBox) (ispPort, cliPort int) {
	t.Helper()
	ispPort, cliPort = testutil.FreeUDPPortBelowEphemeral(t), testutil.FreeUDPPortBelowEphemeral(t)
	registerLine(t, box, ispLine, ispPort)
	registerLine(t, box, clientLine, cliPort)
	return ispPort, cliPort
}

// registerLine registers user from 127.0.0.1:port with sipp, as the ATA does.
func registerLine(t *testing.T, box *testBox, user string, port int) {
	t.Helper()
	sp := startSipp(t, scenario(t, "register.xml", defaults(user)), port, box.Addr().String())
	sp.wait(t, 30*time.Second)
	box.ev.wait(t, 5*time.Second, func(e bus.Event) bool {
		r, ok := e.(bus.PeerRegistered)
		return ok && r.Peer == user && int(r.Addr.Port()) == port
	})
}

var errNoEvent = errors.New("no event")

func callEnded(e bus.Event) bool { _, ok := e.(bus.CallEnded); return ok }

func mustEnded(t *testing.T, box *testBox) bus.CallEnded {
	t.Helper()
	return box.ev.wait(t, 20*time.Second, callEnded).(bus.CallEnded)
}

var _ = fmt.Sprint

func itoa(n int) string { return strconv.Itoa(n) }

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
