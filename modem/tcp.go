package modem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/isp-box/isp-box/modem/at"
	"github.com/isp-box/isp-box/modem/telnet"
)

// KindTCP is a line kind listening on a TCP address: every accepted
// connection is a line of its own.
const KindTCP = "tcp"

// TCPLine listens on cfg.Listen; every accepted connection becomes a Line
// of its own, named NAME:N (a hunt group of lines that exist while they are
// connected). A connection starts in data mode, as after CONNECT on a
// modem line (the login prompt with AutoPPP), or, with cfg.Dialogue, in a
// virtual modem's command mode (emulators whose serial port is a "modem"
// that dials out over TCP). Raw or Telnet (cfg.Telnet). Limits: at most
// MaxConns connections, at most RatePerMin new connections per source
// address per minute, IdleTimeout without a byte from the client, and
// Permit/Deny source prefixes; each refusal is one log line.
type TCPLine struct {
	opts LineOptions
	log  *slog.Logger
	clk  Clock

	mu      sync.Mutex // guards the fields below
	cfg     LineConfig
	conns   map[int]*Line
	next    int
	recent  map[netip.Addr][]time.Time // accept times per source, for the rate limit
	refused int
	addr    net.Addr
	state   string
	since   time.Time
	lastErr string
	wg      sync.WaitGroup
}

// NewTCPLine checks cfg and returns a line ready to Run.
func NewTCPLine(cfg LineConfig, opts LineOptions) (*TCPLine, error) {
	if cfg.Listen == "" {
		return nil, fmt.Errorf("modem: tcp line %s: no listen address", cfg.Name)
	}
	log, clk := opts.logAndClock(cfg.Name)
	return &TCPLine{opts: opts, log: log, clk: clk, cfg: cfg,
		conns: map[int]*Line{}, recent: map[netip.Addr][]time.Time{}, state: "down", since: clk.Now()}, nil
}

// Addr is the address listened on, once Run has started listening.
func (t *TCPLine) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr
}

// Reload takes a new config for the connections accepted from now on; a
// changed listen address needs a restart (the caller says so).
func (t *TCPLine) Reload(cfg LineConfig) {
	t.mu.Lock()
	cfg.Listen = t.cfg.Listen
	t.cfg = cfg
	t.mu.Unlock()
}

// Status is the listener's row (state idle while it listens, the connection count
// in Session) followed by one row per connection.
func (t *TCPLine) Status() []LineStatus {
	t.mu.Lock()
	where := t.cfg.Listen
	if t.addr != nil {
		where = t.addr.String() // the port chosen for :0
	}
	head := LineStatus{Name: t.cfg.Name, Device: "tcp " + where, State: t.state, Since: t.since,
		Errors: t.refused, LastError: t.lastErr, Session: fmt.Sprintf("%d/%d connections", len(t.conns), t.maxConns()),
		Caps: "tcp"}
	if t.cfg.Telnet {
		head.Caps = "telnet"
	}
	ids := make([]int, 0, len(t.conns))
	for id := range t.conns {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	lines := make([]*Line, len(ids))
	for i, id := range ids {
		lines[i] = t.conns[id]
	}
	t.mu.Unlock()
	out := []LineStatus{head}
	for _, l := range lines {
		out = append(out, l.Status())
	}
	return out
}

func (t *TCPLine) maxConns() int {
	if t.cfg.MaxConns > 0 {
		return t.cfg.MaxConns
	}
	return 100
}

// Run listens until ctx is done, then closes every connection and waits
// for their lines.
func (t *TCPLine) Run(ctx context.Context) error {
	cfg := t.config()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		t.mu.Lock()
		t.lastErr = err.Error()
		t.mu.Unlock()
		return fmt.Errorf("modem: tcp line %s: %w", cfg.Name, err)
	}
	t.mu.Lock()
	t.addr, t.state, t.since = ln.Addr(), "idle", t.clk.Now() // listening: the row's device says where
	t.mu.Unlock()
	t.log.Info("listening", "addr", ln.Addr().String(), "telnet", cfg.Telnet, "dialogue", cfg.Dialogue)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer t.wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				t.mu.Lock()
				t.state, t.since = "down", t.clk.Now()
				t.mu.Unlock()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			t.log.Warn("accept", "err", err)
			if t.sleepCtx(ctx, 100*time.Millisecond) {
				return nil
			}
			continue
		}
		t.accept(ctx, nc)
	}
}

func (t *TCPLine) sleepCtx(ctx context.Context, d time.Duration) bool {
	cancelled, _ := clockWait(ctx, t.clk, d, nil)
	return cancelled
}

func (t *TCPLine) config() LineConfig {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cfg
}

// admit decides whether a connection from src may start, and why not.
func (t *TCPLine) admit(src netip.Addr) (id int, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cfg := t.cfg
	allowed := true
	for _, p := range cfg.Deny {
		if p.Contains(src) {
			allowed = false
		}
	}
	for _, p := range cfg.Permit {
		if p.Contains(src) {
			allowed = true
		}
	}
	if len(cfg.Permit) > 0 && len(cfg.Deny) == 0 {
		// permit alone means only those.
		allowed = false
		for _, p := range cfg.Permit {
			if p.Contains(src) {
				allowed = true
			}
		}
	}
	if !allowed {
		return 0, "source not permitted (permit/deny)"
	}
	if len(t.conns) >= t.maxConns() {
		return 0, fmt.Sprintf("max-connections %d reached", t.maxConns())
	}
	now := t.clk.Now()
	if cfg.RatePerMin > 0 {
		times := t.recent[src]
		keep := times[:0]
		for _, at := range times {
			if now.Sub(at) < time.Minute {
				keep = append(keep, at)
			}
		}
		if len(keep) >= cfg.RatePerMin {
			t.recent[src] = keep
			return 0, fmt.Sprintf("rate-limit %d connections a minute from one source", cfg.RatePerMin)
		}
		t.recent[src] = append(keep, now)
		if len(t.recent) > 4096 {
			// Bound the table: forget sources quiet for a minute.
			for a, ts := range t.recent {
				if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= time.Minute {
					delete(t.recent, a)
				}
			}
		}
	}
	t.next++
	return t.next, ""
}

// accept starts a line for nc, or refuses it with a log line.
func (t *TCPLine) accept(ctx context.Context, nc net.Conn) {
	ap, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	src := ap.Addr().Unmap()
	id, why := t.admit(src)
	if why != "" {
		t.mu.Lock()
		t.refused++
		t.lastErr = fmt.Sprintf("refused %s: %s", nc.RemoteAddr(), why)
		t.mu.Unlock()
		t.log.Warn("connection refused", "from", nc.RemoteAddr().String(), "why", why)
		nc.Close()
		return
	}
	cfg := t.config()
	lcfg := cfg
	lcfg.Name = fmt.Sprintf("%s:%d", cfg.Name, id)
	lcfg.Device = nc.RemoteAddr().String()
	l, err := NewLine(lcfg, t.opts)
	if err != nil {
		t.log.Error("connection line", "err", err)
		nc.Close()
		return
	}
	t.mu.Lock()
	t.conns[id] = l
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() {
			t.mu.Lock()
			delete(t.conns, id)
			t.mu.Unlock()
		}()
		err := l.ServeConn(ctx, nc, src.String())
		l.log.Info("connection closed", "from", nc.RemoteAddr().String(), errAttr(err))
	}()
}

// idleConn ends reads that wait longer than idle for the client.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(b []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	n, err := c.Conn.Read(b)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("%w: no data for %s", ErrIdle, c.idle)
	}
	return n, err
}

// ErrIdle ends a TCP line's connection after idle-timeout without a byte
// from the client.
var ErrIdle = errors.New("modem: idle timeout")

// ServeConn runs the line on one accepted connection until it ends: the
// Telnet layer if configured, then data mode (login or AutoPPP, one
// session) or the virtual modem's command mode (cfg.Dialogue, any number of
// calls). callerID is the client's address.
func (l *Line) ServeConn(ctx context.Context, nc net.Conn, callerID string) error {
	cfg := l.config()
	var rw io.ReadWriteCloser = idleConn{Conn: nc, idle: cfg.IdleTimeout}
	if cfg.Telnet {
		tc, err := telnet.Server(rw)
		if err != nil {
			nc.Close()
			return err
		}
		tc.OnRaw = func(after byte) {
			l.log.Info("the client speaks no Telnet (IAC then a data byte): raw stream from now on",
				"from", callerID, "byte", fmt.Sprintf("%#02x", after))
		}
		rw = tc
	}
	p := streamPort(nc.RemoteAddr().String(), rw, l.clk)
	defer func() {
		p.close()
		p.wait()
		l.setState(StateDown, "", "")
	}()
	l.mu.Lock()
	l.status.Caps = "tcp"
	if cfg.Telnet {
		l.status.Caps = "telnet"
	}
	l.callerID = callerID
	l.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// A closed connection must end whatever waits on it.
		<-ctx.Done()
		nc.Close()
	}()
	if cfg.Dialogue {
		err := l.serveVirtual(ctx, p, cfg)
		if errors.Is(p.lastRxErr(), telnet.ErrFlood) || errors.Is(err, telnet.ErrFlood) {
			l.fail(fmt.Errorf("from %s: %w", callerID, telnet.ErrFlood))
		}
		return err
	}
	cn := at.Connection{Speed: cfg.ConnectSpeed, Result: "TCP " + callerID}
	if cn.Speed == 0 {
		cn.Speed = cfg.Speed
	}
	l.mu.Lock()
	l.session++
	l.status.Answered++
	l.status.Session = fmt.Sprintf("%s/%d", cfg.Name, l.session)
	l.status.LastConnect, l.status.Speed, l.status.CallerID = cn.Result, cn.Speed, callerID
	l.mu.Unlock()
	l.setState(StateConnected, cn.Result, "")
	err := l.session1(ctx, p, cfg, cn, "", callerID, sessionKind{stream: true})
	if errors.Is(err, telnet.ErrFlood) || errors.Is(p.lastRxErr(), telnet.ErrFlood) {
		l.fail(fmt.Errorf("from %s: %w", callerID, telnet.ErrFlood))
	}
	return err
}
