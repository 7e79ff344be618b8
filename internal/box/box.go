// Package box assembles one running isp-box from a parsed config: the event
// bus, the store, the network side, the PBX, the modem lines with PPP behind
// them, and the control socket.
//
// Every part has one lifecycle, Run(ctx) and Ready() (parts.go): the box
// starts them in that order, each once the one before is ready, and stops
// them in reverse: the control socket closes first so no one watches a
// half-stopped box, the lines hang up (PPP sends Terminate-Request), the PBX
// ends its calls with BYE, the network side removes what it put in the
// kernel, and the store commits the last records from its reliable bus
// subscription before the database closes. A part that cannot start stops
// the box with an error naming it, after the parts already up have stopped.
//
// SIGHUP (or `isp-box reload`) re-reads the config file. A config that fails
// validation is refused and the running one stays. A valid one is applied
// without dropping live calls or sessions: the PBX takes new peers and dial
// plan in place, a line whose config changed takes it at its next idle, new
// lines start, removed lines stop after their call ends.
package box

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/hostcheck"
	"github.com/isp-box/isp-box/internal/logging"
	"github.com/isp-box/isp-box/internal/metrics"
	"github.com/isp-box/isp-box/internal/radius"
	"github.com/isp-box/isp-box/internal/sdnotify"
	"github.com/isp-box/isp-box/internal/store"
	"github.com/isp-box/isp-box/internal/web"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/netstack"
	"github.com/isp-box/isp-box/pbx"
	"github.com/isp-box/isp-box/pbx/dialplan"
	"github.com/isp-box/isp-box/ppp"
)

// Options are what `isp-box serve` gives the box besides the config.
type Options struct {
	ConfigPath string       // the file SIGHUP re-reads; "" = no reload
	Socket     string       // control socket; "" = config's, else console.DefaultSocketPath; "-" = none
	Database   string       // SQLite file; "" = config's, else store.DefaultPath(); ":memory:" for tests
	Network    string       // "userspace" or "kernel"; "" = config's
	Log        *slog.Logger // nil = discard
	Version    string

	// Bus, when set, is used instead of a new one (the demo watches it).
	Bus *bus.Bus
	// Started, when set, is called once every part has started.
	Started func(*Box)
	// NoSignals: do not handle SIGHUP (tests run several boxes in one process).
	NoSignals bool
	// Notify, when set, is told READY=1 once SIP is bound and every line
	// has tried its port, STATUS= counts, WATCHDOG=1 from the main loop,
	// RELOADING=1 around a reload and STOPPING=1 (systemd's Type=notify).
	Notify *sdnotify.Notifier
}

// Box is a running isp-box.
type Box struct {
	opts    Options
	log     *slog.Logger
	bus     *bus.Bus
	store   *store.Store
	net     *netstack.Stack
	pbx     *pbx.Server
	console *console.Server
	sockets string
	// metricsAddr is the /metrics listener's address, once started.
	metricsAddr string
	started     time.Time
	reg         *ppp.Sessions
	aaa         *aaa           // nil without [radius] servers
	bindings    *bindingWriter // the registrar's bindings on their way to the store

	mu    sync.Mutex // guards cfg, lines and retiring
	cfg   *config.Config
	lines map[string]*lineRunner
	// retiring are lines removed by a reload that still carry a call,
	// until their runner has stopped: a line of the same name added back
	// meanwhile waits for it rather than open the port a second time.
	retiring map[string]*lineRunner
	wg       sync.WaitGroup // line goroutines
	ctx      context.Context

	soft softLines // the lines of the calls the box's own modem answered

	planMu  sync.Mutex // guards the compiled dial plan cache
	planFor *config.Config
	planC   *dialplan.Plan
}

// lineRunner is one modem line and what it needs to run PPP sessions.
type lineRunner struct {
	line   *modem.Line    // nil for a TCP line
	tcp    *modem.TCPLine // a TCP line: a listener and a line per connection
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex // guards cfg
	cfg config.Line
}

// Run builds a box from cfg and runs it until ctx is done.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	b, err := New(cfg, opts)
	if err != nil {
		return err
	}
	return b.Run(ctx)
}

// New checks what can be checked before anything starts.
func New(cfg *config.Config, opts Options) (*Box, error) {
	if cfg == nil {
		return nil, errors.New("box: no config")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := *cfg
	if opts.Network != "" {
		switch netstack.Mode(opts.Network) {
		case netstack.Userspace, netstack.Kernel:
			c.Net.Mode = netstack.Mode(opts.Network)
		default:
			return nil, fmt.Errorf("box: network mode %q: expected userspace or kernel", opts.Network)
		}
	}
	b := &Box{opts: opts, log: log, cfg: &c, lines: make(map[string]*lineRunner), retiring: make(map[string]*lineRunner), reg: ppp.NewSessions()}
	b.bus = opts.Bus
	if b.bus == nil {
		b.bus = bus.New(nil)
	}
	return b, nil
}

// Bus is the box's event bus.
func (b *Box) Bus() *bus.Bus { return b.bus }

// SIPAddr is the address the PBX listens on, once started.
func (b *Box) SIPAddr() netip.AddrPort { return b.pbx.Addr() }

// MetricsAddr is where /metrics is served ("" if off).
func (b *Box) MetricsAddr() string { return b.metricsAddr }

// SocketPath is the control socket's path ("" if none).
func (b *Box) SocketPath() string { return b.sockets }

// Config is the config in force.
func (b *Box) Config() *config.Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg
}

// Run starts every part, waits for ctx, then stops them in reverse order.
// It returns nil after a clean stop.
func (b *Box) Run(ctx context.Context) (err error) {
	b.started = time.Now()
	cfg := b.Config()
	log := b.log

	// The parts are stopped in reverse order of start.
	ps := newParts(log)
	defer func() {
		ps.stop()
		// A failed start is logged once, with its error, by the caller.
		if err == nil {
			log.Info("isp-box stopped")
		}
	}()

	// What would fail later is checked before anything starts, so a
	// busy SIP port (Asterisk still running, the usual migration) or an
	// unwritable database leaves nothing half up and says what to do.
	if err := hostcheck.UDPBindError(cfg.PBX.General.UDPBindAddr); err != nil {
		return fmt.Errorf("box: sip: %w", err)
	}
	dbPath := firstNonEmpty(b.opts.Database, cfg.Box.Database, store.DefaultPath())
	if dbPath != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(dbPath), 0o750); err != nil {
			return fmt.Errorf("box: database directory: %w", err)
		}
		if err := hostcheck.DatabaseWritable(dbPath); err != nil {
			return fmt.Errorf("box: %w", err)
		}
	}

	for _, p := range b.parts(cfg, dbPath) {
		if err := ps.start(ctx, p); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting
			}
			return err
		}
	}

	b.bus.Publish(bus.Notice{Source: "box", Text: fmt.Sprintf("isp-box %s started: %d peers, %d lines, %s network", b.opts.Version, len(cfg.PBX.Peers), len(cfg.Lines), cfg.Net.Mode)})
	if b.opts.Started != nil {
		b.opts.Started(b)
	}

	hup := make(chan os.Signal, 1)
	if !b.opts.NoSignals {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	// systemd: ready once every line has tried its port (a missing modem
	// is reported, not waited for); the watchdog is fed from this loop,
	// so a loop that hangs is restarted by systemd.
	notify := b.opts.Notify
	linesTried := make(chan struct{})
	go b.waitLinesTried(ctx, linesTried)
	var watchdog <-chan time.Time
	statusEvery := 5 * time.Second
	if iv := sdnotify.WatchdogInterval(); iv > 0 && notify.Enabled() {
		t := time.NewTicker(iv)
		defer t.Stop()
		watchdog = t.C
		statusEvery = min(statusEvery, iv)
	}
	statusTick := time.NewTicker(statusEvery)
	defer statusTick.Stop()
	lastStatus := ""
	sendStatus := func(extra ...string) {
		if !notify.Enabled() {
			return
		}
		st := "STATUS=" + b.statusLine()
		if st == lastStatus && len(extra) == 0 {
			return
		}
		lastStatus = st
		if err := notify.Send(append(extra, st)...); err != nil {
			log.Warn("systemd notify", "err", err)
		}
	}
	for {
		select {
		case r := <-ps.Exited():
			// A part that stops on its own stops the box, named, and the
			// others stop in reverse as at any stop.
			if r.err == nil {
				r.err = errors.New("stopped")
			}
			err := partError(r.name, r.err)
			r.err = nil // reported once, by the caller
			notify.Send("STOPPING=1", "STATUS="+err.Error())
			return err
		case <-ctx.Done():
			log.Info("isp-box stopping")
			b.bus.Publish(bus.Notice{Source: "box", Text: "stopping"})
			notify.Send("STOPPING=1", "STATUS=stopping")
			return nil
		case <-linesTried:
			linesTried = nil
			sendStatus("READY=1")
		case <-watchdog:
			notify.Send("WATCHDOG=1")
		case <-statusTick.C:
			sendStatus()
		case <-hup:
			notify.Send(sdnotify.Reloading()...)
			if err := b.Reload(); err != nil {
				logging.Error(log, "reload refused; the running config stays", err)
			}
			sendStatus("READY=1")
		}
	}
}

// parts are the box's parts in the order they start: each needs the ones
// before it (RADIUS and the registrar's bindings the store, PPP on the
// lines the network and the PBX's line states, the control socket and the
// page everything they show). Each part is built when its turn comes.
func (b *Box) parts(cfg *config.Config, dbPath string) []part {
	log := b.log
	ps := []part{{
		name: "store",
		open: func() (runner, error) {
			st, err := store.Open(context.Background(), dbPath)
			if err != nil {
				return nil, err
			}
			st.Log, st.Bus = log.With("comp", "store"), b.bus
			b.store = st
			return then{st, st.Close}, nil
		},
		ready: func() { log.Info("store opened", "path", dbPath) },
	}}
	if rc := cfg.Radius; rc.Enabled() || len(rc.Acct) > 0 {
		ps = append(ps, part{
			name: "radius",
			open: func() (runner, error) {
				b.aaa = newAAA(rc, b.store, b.bus, b.reg, log.With("comp", "radius"))
				return runFunc(func(ctx context.Context) error { b.aaa.run(ctx, 3*time.Second); return nil }), nil
			},
			ready: func() {
				log.Info("radius", "auth-order", rc.Order, "authservers", len(rc.Auth), "acctservers", len(rc.Acct))
			},
		})
	}
	ps = append(ps, part{
		name: "network",
		open: func() (runner, error) {
			// The stack's own context outlives its Run: Close removes
			// the kernel state in order, then the context ends.
			nctx, cancel := context.WithCancel(context.Background())
			ns, err := netstack.New(nctx, cfg.Net, netstack.Options{Bus: b.bus, Log: log})
			if err != nil {
				cancel()
				return nil, err
			}
			b.net = ns
			return then{ns, func() error { cancel(); return nil }}, nil
		},
	}, part{
		// Registrations reach the database behind the registrar's back
		// (see bindingWriter); stopped after the PBX, so the last
		// bindings are written before the store closes.
		name: "registrations",
		open: func() (runner, error) {
			bw := newBindingWriter(bindingStore{b.store}, log)
			b.bindings = bw
			return runFunc(func(ctx context.Context) error { <-ctx.Done(); bw.close(); return nil }), nil
		},
	}, part{
		name: "sip",
		open: func() (runner, error) {
			p, err := pbx.New(cfg.PBX, pbx.Options{Bus: b.bus, Log: log.With("comp", "pbx"), Bindings: b.bindings, Modem: b.serveSoftmodem})
			if err != nil {
				return nil, err
			}
			b.pbx = p
			return sipRunner{p, cfg.PBX.General.UDPBindAddr}, nil
		},
	}, part{
		name: "lines",
		open: func() (runner, error) {
			lctx, cancel := context.WithCancel(context.Background())
			stop := func() { cancel(); b.wg.Wait() }
			b.mu.Lock()
			b.ctx = lctx
			for _, lc := range cfg.Lines {
				if err := b.startLineLocked(lc); err != nil {
					b.mu.Unlock()
					stop()
					return nil, fmt.Errorf("%s: %w", lc.Modem.Name, err)
				}
			}
			b.mu.Unlock()
			return runFunc(func(ctx context.Context) error { <-ctx.Done(); stop(); return nil }), nil
		},
	})
	if sock := firstNonEmpty(b.opts.Socket, cfg.Box.Console, console.DefaultSocketPath()); sock != "-" {
		ps = append(ps, part{
			name: "control socket",
			open: func() (runner, error) {
				b.sockets = sock
				b.console = console.NewServer(console.ServerOptions{
					Socket: sock,
					Status: func(context.Context) console.Status { return b.Status() },
					Bus:    b.bus,
					Reload: func(context.Context) error {
						b.opts.Notify.Send(sdnotify.Reloading()...)
						defer b.opts.Notify.Send("READY=1")
						return b.Reload()
					},
					Unban: func(_ context.Context, a netip.Addr) bool { return b.pbx.Unban(a) },
					History: func(ctx context.Context, n int) (console.History, error) {
						calls, err1 := b.store.Calls(ctx, n)
						sessions, err2 := b.store.Sessions(ctx, n)
						return console.History{Calls: calls, Sessions: sessions}, errors.Join(err1, err2)
					},
					Version:   b.opts.Version,
					Log:       log,
					Profiling: profiling(log),
				})
				return b.console, nil
			},
			ready: func() { log.Info("control socket", "path", sock) },
		})
	}
	if ma := cfg.Box.Metrics; ma.IsValid() {
		ps = append(ps, part{
			name:  "metrics",
			open:  func() (runner, error) { return b.metricsRunner(ma.String()) },
			ready: func() { log.Info("metrics", "addr", "http://"+b.metricsAddr+"/metrics") },
		})
	}
	return ps
}

// sipRunner is the PBX as a part: a bind error says who holds the port.
type sipRunner struct {
	*pbx.Server
	bind netip.AddrPort
}

func (s sipRunner) Run(ctx context.Context) error {
	err := s.Server.Run(ctx)
	if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES) {
		// Taken between the check before the start and now: explain it
		// the same way.
		err = hostcheck.ExplainBind(s.bind, err)
	}
	return err
}

// metricsRunner serves /metrics and the status page on addr.
func (b *Box) metricsRunner(addr string) (runner, error) {
	ml, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b.metricsAddr = ml.Addr().String()
	mux := http.NewServeMux()
	mm := metrics.New(b.Status, b.bus)
	mux.Handle("GET /metrics", mm)
	webDone := make(chan struct{})
	web.Register(mux, b.Status, b.bus, webDone)
	msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return runFunc(func(ctx context.Context) error {
		mctx, mcancel := context.WithCancel(ctx)
		mdone := make(chan struct{})
		go func() { defer close(mdone); mm.Run(mctx) }()
		served := make(chan error, 1)
		go func() { served <- msrv.Serve(ml) }()
		select {
		case err = <-served:
		case <-ctx.Done():
			close(webDone) // ends the pages' event streams
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			msrv.Shutdown(sctx)
			cancel()
			err = <-served
		}
		mcancel()
		<-mdone
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}), nil
}

// waitLinesTried closes tried once every line has made its first attempt
// at its port: past opening, or an error (missing, no permission, locked)
// reported. A line that takes longer than 30 s does not hold the box back.
func (b *Box) waitLinesTried(ctx context.Context, tried chan<- struct{}) {
	defer close(tried)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		b.mu.Lock()
		all := true
		for _, r := range b.lines {
			if r.line == nil {
				continue // a TCP line has no port to open
			}
			st := r.line.Status()
			if st.State == "opening" && st.Errors == 0 && st.LastError == "" {
				all = false
			}
		}
		b.mu.Unlock()
		if all {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// statusLine is systemd's STATUS=: one line of counts for systemctl status.
func (b *Box) statusLine() string {
	st := b.Status()
	reg, up := 0, 0
	for _, p := range st.Peers {
		if p.Host.IsValid() {
			reg++
		}
	}
	for _, l := range st.Lines {
		switch l.State {
		case "idle", "ringing", "answering", "connected", "hangingup":
			up++
		}
	}
	return fmt.Sprintf("%d/%d peers registered, %d/%d lines up, %d calls, %d sessions",
		reg, len(st.Peers), up, len(st.Lines), len(st.Calls), len(st.Sessions))
}

// startLineLocked starts one modem line. Precondition: b.mu is held.
func (b *Box) startLineLocked(lc config.Line) error {
	r := &lineRunner{cfg: lc, done: make(chan struct{})}
	lg := logging.Debug(b.log, lc.Modem.Debug > 0) // mgetty's debug N: this line's debug log
	lopts := modem.LineOptions{
		Bus:        b.bus,
		Log:        lg,
		Handler:    func(ctx context.Context, c modem.Conn, user string) error { return b.servePPP(ctx, r, c, user) },
		DetectPPP:  ppp.Detect,
		CheckLogin: b.checkLogin,
		Dial:       b.dialFromLine,
		Service:    b.serviceForCall,
	}
	var run func(context.Context) error
	if lc.Modem.Kind == modem.KindTCP {
		tl, err := modem.NewTCPLine(lc.Modem, lopts)
		if err != nil {
			return err
		}
		r.tcp, run = tl, tl.Run
	} else {
		line, err := modem.NewLine(lc.Modem, lopts)
		if err != nil {
			return err
		}
		r.line, run = line, line.Run
	}
	ctx, cancel := context.WithCancel(b.ctx)
	r.cancel = cancel
	b.lines[lc.Modem.Name] = r
	prev := b.retiring[lc.Modem.Name]
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(r.done)
		if prev != nil {
			select {
			case <-prev.done:
			case <-ctx.Done():
				return
			}
		}
		if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			lg.Error("line stopped", "err", err)
		}
	}()
	return nil
}

// retireLocked stops a line removed from the config once it carries no
// call: at once if it has none, else when its call ends. Cancelling its
// context earlier would hang the call up (the line's shutdown drops DTR
// and ends the PPP session). Precondition: b.mu is held.
func (b *Box) retireLocked(name string, r *lineRunner) {
	// Subscribe before looking at the state, so no change is missed.
	sub := b.bus.SubscribeReliable("retiring line "+name, func(ev bus.Event) bool {
		e, ok := ev.(bus.LineState)
		return ok && e.Line == name
	})
	b.retiring[name] = r
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			sub.Close()
			r.cancel()
			<-r.done
			b.mu.Lock()
			if b.retiring[name] == r {
				delete(b.retiring, name)
			}
			b.mu.Unlock()
		}()
		if r.tcp != nil || !bus.LineStatus(r.line.Status().State).InCall() {
			return
		}
		b.log.Info("reload: line removed from the config; it stops when its call ends", "line", name)
		for {
			select {
			case env, ok := <-sub.C():
				if !ok || !env.Event.(bus.LineState).State.InCall() {
					return
				}
			case <-r.done:
				return
			case <-b.ctx.Done():
				return
			}
		}
	}()
}

// servePPP runs one PPP session on an answered call.
func (b *Box) servePPP(ctx context.Context, r *lineRunner, c modem.Conn, user string) error {
	r.mu.Lock()
	pcfg := r.cfg.PPP
	r.mu.Unlock()
	port := b.portOf(c)
	rec, err := b.runPPP(ctx, c, pcfg, ppp.Options{CallID: c.CallID(), CallerID: port.Calling, LoggedInUser: user}, port)
	if err != nil {
		b.log.Debug("ppp session ended", "line", c.Line(), "cause", rec.Cause, "err", err)
	} else {
		b.log.Debug("ppp session ended", "line", c.Line(), "cause", rec.Cause)
	}
	return err
}

// runPPP runs one PPP session on c with pcfg: opts carries what the call
// knows (call ID, caller, the user of a text login), runPPP the rest. With
// RADIUS the session is accounted for port, and authenticated by the
// servers ([users] too unless [radius] says not).
func (b *Box) runPPP(ctx context.Context, c modem.Conn, pcfg ppp.Config, opts ppp.Options, port radius.Port) (ppp.Record, error) {
	cfg := b.Config()
	opts.Bus = b.bus
	opts.Log = logging.Debug(b.log, pcfg.Debug) // pppd's debug
	opts.Line = c.Line()
	opts.Session = newSessionID()
	opts.Users = cfg.Users
	opts.Network = netAdapter{b.net}
	opts.Registry = b.reg
	if b.aaa != nil {
		b.aaa.begin(opts.Session, port)
		if cfg.Radius.Enabled() {
			opts.Authenticator = b.aaa
			if !cfg.Radius.UseFile() {
				opts.Users = nil
			}
		}
	}
	rec, err := ppp.Serve(ctx, c, pcfg, opts)
	if b.aaa != nil {
		b.aaa.end(opts.Session, rec)
	}
	return rec, err
}

// checkLogin checks a text login against [users], as the seed's system
// password of user dial.
func (b *Box) checkLogin(user, password string) bool {
	secret, _, ok := ppp.UserList(b.Config().Users).Lookup(user, "*")
	return ok && (secret == password || secret == ppp.AnyLogin)
}

// Reload re-reads the config file and applies it, or refuses it and keeps
// the running one.
func (b *Box) Reload() error {
	if b.opts.ConfigPath == "" {
		return errors.New("no config file to reload")
	}
	nc, err := config.Load(b.opts.ConfigPath)
	if err != nil {
		b.bus.Publish(bus.Notice{Source: "box", Text: "reload refused: " + firstLine(err.Error())})
		return err
	}
	if b.opts.Network != "" {
		nc.Net.Mode = netstack.Mode(b.opts.Network)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.cfg
	if !reflect.DeepEqual(nc.Net, old.Net) {
		b.log.Warn("reload: [network] changes take effect at the next start")
		nc.Net = old.Net
	}
	// The SIP socket, the control socket, the database and the logger
	// are opened once; say so rather than report them applied.
	if nc.PBX.General.UDPBindAddr != old.PBX.General.UDPBindAddr {
		b.log.Warn("reload: udpbindaddr changes take effect at the next start",
			"running", old.PBX.General.UDPBindAddr, "file", nc.PBX.General.UDPBindAddr)
		nc.PBX.General.UDPBindAddr = old.PBX.General.UDPBindAddr
	}
	if nc.Box.Console != old.Box.Console || nc.Box.Database != old.Box.Database || nc.Box.LogLevel != old.Box.LogLevel ||
		nc.Box.MemoryLimit != old.Box.MemoryLimit {
		b.log.Warn("reload: [box] changes take effect at the next start")
		nc.Box.Console, nc.Box.Database, nc.Box.LogLevel = old.Box.Console, old.Box.Database, old.Box.LogLevel
		nc.Box.MemoryLimit = old.Box.MemoryLimit
	}
	if !reflect.DeepEqual(nc.Radius, old.Radius) {
		b.log.Warn("reload: [radius] changes take effect at the next start")
		nc.Radius = old.Radius
	}
	if err := b.pbx.Reload(nc.PBX); err != nil {
		return fmt.Errorf("reload: sip: %w", err)
	}
	seen := make(map[string]bool)
	for _, lc := range nc.Lines {
		seen[lc.Modem.Name] = true
		if r, ok := b.lines[lc.Modem.Name]; ok {
			r.mu.Lock()
			r.cfg = lc
			r.mu.Unlock()
			if r.tcp != nil {
				if old := r.tcp.Status()[0].Device; old != "tcp "+lc.Modem.Listen {
					b.log.Warn("reload: a TCP line's listen address changes at the next start", "line", lc.Modem.Name, "running", old)
				}
				r.tcp.Reload(lc.Modem)
				continue
			}
			r.line.Reload(lc.Modem)
			continue
		}
		if err := b.startLineLocked(lc); err != nil {
			b.log.Error("reload: line not started", "line", lc.Modem.Name, "err", err)
		}
	}
	for name, r := range b.lines {
		if !seen[name] {
			delete(b.lines, name)
			b.retireLocked(name, r)
		}
	}
	b.cfg = nc
	b.log.Info("config reloaded", "file", b.opts.ConfigPath)
	b.bus.Publish(bus.Notice{Source: "box", Text: "config reloaded from " + b.opts.ConfigPath})
	return nil
}

// Status is the daemon's status for the control socket.
func (b *Box) Status() console.Status {
	cfg := b.Config()
	st := console.Status{
		Version: b.opts.Version,
		Started: b.started,
		Config:  b.opts.ConfigPath,
		Network: string(cfg.Net.Mode),
		Bus:     console.BusStatsOf(b.bus),
	}
	if b.pbx != nil {
		st.SIPAddr = b.pbx.Addr().String()
		st.Peers = b.pbx.Peers()
		st.Calls = b.pbx.Calls()
		st.Counters = append(st.Counters, console.Counter{Name: "sip.malformed", Value: b.pbx.Malformed()})
		es := b.pbx.EdgeStats()
		for _, c := range []console.Counter{
			{Name: "sip.banned_drops", Value: es.Banned},
			{Name: "sip.auth_failures", Value: es.AuthFailures},
			{Name: "sip.rate_limited", Value: es.RateLimited},
			{Name: "sip.stateless_answers", Value: es.Stateless},
			{Name: "sip.not_answered_larger", Value: es.NotAnswered},
			{Name: "sip.guesses_throttled", Value: es.Throttled},
			{Name: "sip.calls_shed", Value: es.Shed},
			{Name: "sip.queue_full", Value: es.QueueFull},
		} {
			st.Counters = append(st.Counters, c)
		}
		for a, until := range b.pbx.Bans() {
			st.Bans = append(st.Bans, console.BanRow{Addr: a.String(), Until: until})
		}
		sort.Slice(st.Bans, func(i, j int) bool { return st.Bans[i].Addr < st.Bans[j].Addr })
		st.Registry = b.pbx.Registry()
	}
	b.mu.Lock()
	var lines []*lineRunner
	for _, lc := range cfg.Lines {
		if r, ok := b.lines[lc.Modem.Name]; ok {
			lines = append(lines, r)
		}
	}
	b.mu.Unlock()
	for _, r := range lines {
		if r.tcp != nil {
			st.Lines = append(st.Lines, r.tcp.Status()...)
		} else {
			st.Lines = append(st.Lines, r.line.Status())
		}
	}
	// A softmodem call's line and session carry its modem's figures.
	modems := map[string]*bus.ModemStats{}
	for _, c := range st.Calls {
		if c.Modem != nil {
			modems["softmodem/"+c.ID] = c.Modem
		}
	}
	for _, s := range b.soft.status() {
		s.Modem = modems[s.Name]
		st.Lines = append(st.Lines, s)
	}
	for _, s := range b.reg.List() {
		st.Sessions = append(st.Sessions, console.Session{Session: s, Acct: b.aaa.state(s.ID), Modem: modems[s.Line]})
	}
	if b.net != nil {
		st.Net = b.net.Status()
		// The drops are also named counters, as the other parts' are.
		for _, k := range slices.Sorted(maps.Keys(st.Net.Dropped)) {
			st.Counters = append(st.Counters, console.Counter{Name: bus.DropReason(k).Metric(), Value: st.Net.Dropped[k]})
		}
	}
	return st
}

// bindingStore adapts the store to the registrar's BindingStore.
type bindingStore struct{ s *store.Store }

func (a bindingStore) LoadBindings(ctx context.Context) ([]pbx.Binding, error) {
	regs, err := a.s.Registrations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]pbx.Binding, 0, len(regs))
	for _, r := range regs {
		out = append(out, pbx.Binding{
			Peer: r.Peer, Contact: r.Contact, Source: r.Addr, Username: r.Username,
			UserAgent: r.UserAgent, CallID: r.CallID, CSeq: r.CSeq, Expires: r.Expires, NAT: r.NAT,
		})
	}
	return out, nil
}

func (a bindingStore) SaveBinding(ctx context.Context, bd pbx.Binding) error {
	return a.s.SaveRegistration(ctx, store.Registration{
		Peer: bd.Peer, AOR: "sip:" + bd.Peer, Contact: bd.Contact, Addr: bd.Source, Username: bd.Username,
		UserAgent: bd.UserAgent, CallID: bd.CallID, CSeq: bd.CSeq, Expires: bd.Expires, NAT: bd.NAT,
	})
}

func (a bindingStore) DeleteBinding(ctx context.Context, peer string) error {
	return a.s.DeleteRegistration(ctx, peer)
}

// bindingWriter writes registrations to the store in the background. The
// registrar saved each binding synchronously before answering, and the
// store has one SQLite connection: under a burst of REGISTERs every
// handler queued behind the disk (2,000 REGISTER/s from one line: 87 % of
// the handlers' blocked time in SaveRegistration, answers 12 s late,
// retransmitted). Now a binding waits in memory, a peer's later binding
// replaces its earlier one, and one goroutine writes what is pending. A
// crash loses at most the bindings of the last write's duration, which
// the ATAs' next refresh restores.
type bindingWriter struct {
	st  bindingStore
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]*pbx.Binding // nil: delete the peer's binding
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newBindingWriter(st bindingStore, log *slog.Logger) *bindingWriter {
	w := &bindingWriter{st: st, log: log, pending: make(map[string]*pbx.Binding),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *bindingWriter) LoadBindings(ctx context.Context) ([]pbx.Binding, error) {
	return w.st.LoadBindings(ctx)
}

func (w *bindingWriter) SaveBinding(_ context.Context, bd pbx.Binding) error {
	w.put(bd.Peer, &bd)
	return nil
}

func (w *bindingWriter) DeleteBinding(_ context.Context, peer string) error {
	w.put(peer, nil)
	return nil
}

func (w *bindingWriter) put(peer string, bd *pbx.Binding) {
	w.mu.Lock()
	w.pending[peer] = bd
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *bindingWriter) run() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
			w.flush()
		case <-w.stop:
			w.flush()
			return
		}
	}
}

// flush writes what is pending; a failed write is logged, and the peer's
// next REGISTER tries again.
func (w *bindingWriter) flush() {
	w.mu.Lock()
	batch := w.pending
	w.pending = make(map[string]*pbx.Binding)
	w.mu.Unlock()
	ctx := context.Background()
	for peer, bd := range batch {
		var err error
		if bd == nil {
			err = w.st.DeleteBinding(ctx, peer)
		} else {
			err = w.st.SaveBinding(ctx, *bd)
		}
		if err != nil {
			w.log.Error("registration not saved", "peer", peer, "err", err)
		}
	}
}

// close writes the last bindings and stops the writer.
func (w *bindingWriter) close() {
	close(w.stop)
	<-w.done
}

// netAdapter lets the network side satisfy ppp.Network: the methods match,
// only Attach's result type differs.
type netAdapter struct{ s *netstack.Stack }

func (a netAdapter) Attach(ctx context.Context, session string, want netip.Addr, deliver func([]byte)) (ppp.NetLink, error) {
	s, err := a.s.Attach(ctx, session, want, deliver)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i] + " …"
		}
	}
	return s
}

// portOf describes the NAS port a call came in on: the line's position in
// the config (NAS-Port), its name (NAS-Port-Id), Async for a modem or
// Virtual for a TCP line (RFC 2865 §5.41), and the caller.
func (b *Box) portOf(c modem.Conn) radius.Port {
	p := radius.Port{ID: c.Line(), Type: radius.NASPortAsync, Calling: c.CallerID()}
	if _, ok := c.(interface{ RemoteAddr() net.Addr }); ok {
		p.Type = radius.NASPortVirtual
	}
	for i, lc := range b.Config().Lines {
		// A TCP line's connections are named "line:N".
		if lc.Modem.Name == c.Line() || strings.HasPrefix(c.Line(), lc.Modem.Name+":") {
			p.Number = uint32(i)
			if lc.Modem.Kind == modem.KindTCP {
				p.Type = radius.NASPortVirtual
			}
		}
	}
	if id := c.CallID(); id != "" && b.pbx != nil {
		for _, ci := range b.pbx.Calls() {
			if ci.ID == id {
				if p.Calling == "" {
					p.Calling = ci.From
				}
				p.Called = ci.Exten
			}
		}
	}
	return p
}

// profiling reports whether ISPBOX_PPROF=1 asks for Go's profiles on the
// control socket, and then also samples blocking and lock contention
// (off otherwise: both cost a little on every wait).
func profiling(log *slog.Logger) bool {
	if os.Getenv("ISPBOX_PPROF") != "1" {
		return false
	}
	runtime.SetBlockProfileRate(int(time.Millisecond / 10)) // one event per 100 µs blocked
	runtime.SetMutexProfileFraction(10)
	log.Warn("profiling on (ISPBOX_PPROF=1): /debug/pprof/ on the control socket")
	return true
}
