package box_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/examples"
	"github.com/isp-box/isp-box/internal/box"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/hayes"
	"github.com/isp-box/isp-box/internal/status"
	"github.com/isp-box/isp-box/internal/testutil"
)

// ringInterval keeps calls short: the emulated modems ring every 300 ms
// instead of every 6 s; the config's "rings 2" still counts two.
const ringInterval = 300 * time.Millisecond

// rig is the chain built from its pieces rather than demo.World, because
// these tests restart the box under a running ATA and reload a config
// FILE (World runs a parsed config with no file behind it):
//
//	client modem -> ATA line 2 -> box (SIP) -> ATA line 1 -> ISP modem <- box line ttyUSB0
//
// The config is examples/pap2t.conf with only what a machine without
// hardware needs rewritten (SIP port, the line's device).
type rig struct {
	t       *testing.T
	dir     string
	cfgPath string
	db      string
	sock    string
	port    int    // the box's SIP port, the same across restarts
	ispLink string // the ISP modem's pty, the box line's device
	logs    *testutil.LogBuffer

	isp, cli *hayes.Modem
	ata      *ata.ATA
	ataStop  context.CancelFunc
	ataDone  chan error
}

// newRig writes the config and starts the modems; the ATA and the box are
// started by startATA and startBox.
func newRig(t *testing.T) *rig {
	t.Helper()
	dir, err := os.MkdirTemp("", "ibx") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &rig{t: t, dir: dir, cfgPath: filepath.Join(dir, "isp-box.conf"), db: filepath.Join(dir, "isp-box.db"),
		sock: filepath.Join(dir, "isp-box.sock"), port: testutil.FreeUDPPort(t), logs: &testutil.LogBuffer{}}
	// The UUCP lock is named after the device's base name: make it unique
	// so that parallel test processes do not wait on each other's lock.
	r.ispLink = filepath.Join(dir, "tty-"+filepath.Base(dir))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last log lines:\n%s", r.logs.Tail(120))
		}
	})
	r.writeConfig("")
	return r
}

// configText is the example with the SIP port and the line's device
// rewritten, plus extra appended.
func (r *rig) configText(extra string) string {
	src := string(examples.PAP2T)
	src = mustReplace(r.t, src, "udpbindaddr=0.0.0.0:5060", fmt.Sprintf("udpbindaddr=127.0.0.1:%d", r.port))
	// mgetty keys after "port ttyUSB0" belong to that port.
	src = mustReplace(r.t, src, " peer pap2t-ispmodem\n", " peer pap2t-ispmodem\n device "+r.ispLink+"\n")
	return src + extra
}

func (r *rig) writeConfig(extra string) {
	r.t.Helper()
	if err := os.WriteFile(r.cfgPath, []byte(r.configText(extra)), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func mustReplace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("examples/pap2t.conf has no %q any more; update the test", old)
	}
	return strings.Replace(s, old, new, 1)
}

func netipLoopback(port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
}

// startATA starts the two-line ATA registering with the box's port, the
// ISP modem on line 1 (on the pty the box's line opens) and the client
// modem on line 2. It runs until the test ends, across box restarts.
func (r *rig) startATA() {
	t := r.t
	t.Helper()
	reg := netipLoopback(r.port)
	a, err := ata.New(ata.Options{Log: r.log("ata"), Lines: []ata.LineConfig{
		{Name: "line1", User: "pap2t-ispmodem", Password: "password", Registrar: reg},
		{Name: "line2", User: "pap2t-client", Password: "password", Registrar: reg},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.ata = a
	isp, err := hayes.New(hayes.Options{Link: r.ispLink, Phone: a.Line(0), RingInterval: ringInterval, Name: "isp", Log: r.log("hayes-isp")})
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	cli, err := hayes.New(hayes.Options{Link: filepath.Join(r.dir, "client"), Phone: a.Line(1), RingInterval: ringInterval, Name: "client", Log: r.log("hayes-client")})
	if err != nil {
		isp.Close()
		a.Close()
		t.Fatal(err)
	}
	r.isp, r.cli = isp, cli
	a.Line(0).Plug(isp)
	a.Line(1).Plug(cli)
	ctx, cancel := context.WithCancel(context.Background())
	r.ataStop, r.ataDone = cancel, make(chan error, 1)
	go func() { r.ataDone <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.ataDone; err != nil {
			t.Errorf("ata: %v", err)
		}
		isp.Close()
		cli.Close()
	})
}

// log is a logger into the rig's buffer; comp names the simulator. The
// box's own is unnamed, as `isp-box serve` gives it: its parts name
// themselves.
func (r *rig) log(comp string) *slog.Logger {
	l := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if comp == "" {
		return l
	}
	return l.With("comp", comp)
}

// running is one box started by startBox.
type running struct {
	*box.Box
	bus    *bus.Bus
	events *eventLog
	stop   context.CancelFunc
	done   chan error
}

// startBox loads the config file and runs a box on it (the database and
// socket of the rig), as `isp-box serve` does, and returns once it has
// started. The test's end stops it if the test did not.
func (r *rig) startBox() *running {
	t := r.t
	t.Helper()
	cfg, err := config.Load(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b := bus.New(nil)
	ev := watch(b)
	started := make(chan struct{})
	bx, err := box.New(cfg, box.Options{
		ConfigPath: r.cfgPath, Socket: r.sock, Database: r.db, Log: r.log(""), Version: "test",
		Bus: b, Started: func(*box.Box) { close(started) }, NoSignals: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rb := &running{Box: bx, bus: b, events: ev, stop: cancel, done: make(chan error, 1)}
	go func() { rb.done <- bx.Run(ctx) }()
	t.Cleanup(func() { rb.Stop(t) })
	select {
	case <-started:
	case err := <-rb.done:
		rb.done <- err
		t.Fatalf("box stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("box did not start within 30 s")
	}
	return rb
}

// Stop stops the box (as SIGTERM does) and checks it stopped cleanly.
// Calling it again does nothing.
func (rb *running) Stop(t *testing.T) {
	t.Helper()
	if rb.stop == nil {
		return
	}
	rb.stop()
	rb.stop = nil
	select {
	case err := <-rb.done:
		if err != nil {
			t.Errorf("box stopped with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("box did not stop within 60 s")
	}
	rb.events.close()
}

// eventLog keeps every event of a box's bus, in order, from a reliable
// subscription taken before the box starts.
type eventLog struct {
	sub  *bus.Sub
	done chan struct{}
	mu   sync.Mutex
	evs  []bus.Event
	once sync.Once
}

func watch(b *bus.Bus) *eventLog {
	l := &eventLog{sub: b.SubscribeReliable("test", nil), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for env := range l.sub.C() {
			l.mu.Lock()
			l.evs = append(l.evs, env.Event)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *eventLog) close() {
	l.once.Do(func() { l.sub.Close(); <-l.done })
}

// all returns the events seen so far.
func (l *eventLog) all() []bus.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bus.Event(nil), l.evs...)
}

// slow skips the test in -short mode, saying why, and returns a context
// that ends after d or with the test.
func slow(t *testing.T, why string, d time.Duration) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dialedRig starts a test that dials through the box (why, for slow): a
// rig, its box ready, and the client's call connected with PPP up.
func dialedRig(t *testing.T, why string) (context.Context, *rig, *running, *demo.Session) {
	ctx := slow(t, why, 2*time.Minute)
	r := newRig(t)
	b := r.readyBox()
	return ctx, r, b, r.dial(ctx)
}

// readyBox starts a box on the rig's config file and the ATA, and returns
// once the box can take a call.
func (r *rig) readyBox() *running {
	r.t.Helper()
	b := r.startBox()
	r.startATA()
	r.waitReady(b)
	return b
}

// waitReady waits until both ATA lines are registered, both peers answer
// OPTIONS, and the modem line is idle: the box can take a call.
func (r *rig) waitReady(rb *running) {
	r.t.Helper()
	testutil.WaitFor(r.t, 30*time.Second, "ATA lines registered", func() (bool, string) {
		for _, li := range r.ata.Describe() {
			if !li.Registered {
				return false, fmt.Sprintf("%s not registered (%s)", li.User, li.RegError)
			}
		}
		return true, ""
	})
	waitPeersReady(r.t, rb.Box)
}

func waitPeersReady(t *testing.T, b *box.Box) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, "peers OK and line idle", func() (bool, string) {
		st := b.Status()
		if len(st.Peers) < 2 {
			return false, fmt.Sprintf("%d peers", len(st.Peers))
		}
		for _, p := range st.Peers {
			if p.Monitored && !strings.HasPrefix(p.Status, "OK") {
				return false, p.Name + " " + p.Status
			}
		}
		for _, l := range st.Lines {
			if l.State != "idle" {
				return false, "line " + l.Name + " " + l.State + " " + l.LastError
			}
		}
		return len(st.Calls) == 0 && len(st.Sessions) == 0, fmt.Sprintf("%d calls %d sessions", len(st.Calls), len(st.Sessions))
	})
}

func peerByName(st console.Status, name string) (status.Peer, bool) {
	for _, p := range st.Peers {
		if p.Name == name {
			return p, true
		}
	}
	return status.Peer{}, false
}
