package modem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/modem/at"
)

// Line kinds (LineConfig.Kind).
const (
	KindModem   = "modem"         // a hardware modem on the port: mgetty's job
	KindVirtual = "virtual-modem" // no modem: the box answers AT itself
)

// Route is what the dial plan decided for a number dialled on a virtual
// modem.
type Route struct {
	// Service is what answers: ServicePPP (the line's AutoPPP or login, as
	// on a hardware line), ServiceLogin (the text login only).
	Service string
	Target  string // for services that reach elsewhere, e.g. host:port
}

// Services a Route may name.
const (
	ServicePPP    = "ppp"
	ServiceLogin  = "login"
	ServiceTelnet = "telnet" // bridge to Target (host:port) with Telnet negotiation
	ServiceTCP    = "tcp"    // bridge to Target, raw bytes
)

// Dial failures the Dial option returns; anything else is NO CARRIER.
var (
	ErrBusy       = errors.New("modem: number busy")
	ErrNoAnswer   = errors.New("modem: no answer")
	ErrNoDialtone = errors.New("modem: no dial tone")
)

// Errors that end a virtual modem's call.
var (
	ErrHungUp  = errors.New("modem: DTE hung up (ATH)")
	ErrDTRDrop = errors.New("modem: DTE dropped DTR")
)

// virtualProfile is what a virtual modem says to ATIn.
var virtualProfile = at.Profile{Ident: map[int]string{
	0: "33600",
	1: "OK",
	3: "isp-box virtual modem",
	7: "isp-box virtual modem: dial plan, PPP, login",
}}

// virtualCall is the shared state of one call on a virtual modem between
// the line goroutine and the session's pump.
type virtualCall struct {
	c         *conn
	eng       *at.Engine
	speed     int
	dtrHangup bool // &D2/&D3: DTR low hangs up
	hungUp    bool // ended by ATH: the OK was the result
}

// serveVirtual is a virtual modem line: a serial port with a computer on
// the other end of a null-modem cable and no modem at all. The box answers
// the AT dialogue itself (modem/at's Engine, the same as the simulator's),
// dials through the dial plan (LineOptions.Dial), answers CONNECT and runs
// the session as a hardware line would; +++ and ATH, or DTR dropped, hang
// up; the line goes back to command mode.
func (l *Line) serveVirtual(ctx context.Context, p *port, cfg LineConfig) error {
	eng := at.NewEngine(virtualProfile)
	junk := 0
	for ctx.Err() == nil {
		if changed, reopen := l.applyReload(); reopen {
			return errReopen
		} else if changed {
			cfg = l.config()
		}
		l.setState(StateIdle, "", "")
		chunk, err := l.readWoken(ctx, p)
		if errors.Is(err, errWoken) {
			continue
		}
		if err != nil {
			return err
		}
		for len(chunk) > 0 {
			out, acts, rest := eng.Feed(chunk)
			if n := eng.Dropped(); n > 0 {
				l.log.Warn("command line too long, answered ERROR", "dropped", n, "max", at.MaxLine)
			}
			if len(acts) == 0 && !bytes.ContainsAny(chunk, "Aa\r") {
				junk += len(chunk)
			}
			if err := p.write(out); err != nil {
				return err
			}
			chunk = rest
			for _, a := range acts {
				switch a.Kind {
				case at.ActDial:
					p.pending = rest
					chunk = nil
					if err := l.virtualDial(ctx, p, cfg, eng, a); err != nil {
						return err
					}
				case at.ActClient:
					// Windows Direct Cable Connection (and NT RAS): the
					// client says CLIENT, the host CLIENTSERVER, then PPP.
					if err := p.write([]byte("CLIENTSERVER")); err != nil {
						return err
					}
					p.pending = rest
					chunk = nil
					if err := l.virtualSession(ctx, p, cfg, eng, at.Connection{Speed: cfg.Speed, Result: "CLIENTSERVER"}, sessionKind{direct: true}); err != nil {
						return err
					}
				case at.ActAnswer, at.ActOnline:
					// No call to answer or return to.
					if err := p.write(eng.Result("NO CARRIER")); err != nil {
						return err
					}
				default: // nothing to do for the other actions
				}
			}
		}
		if junk >= 64 {
			l.log.Info("ignoring bytes that are not AT commands in command mode", "bytes", junk)
			junk = 0
		}
	}
	return ctx.Err()
}

var errWoken = errors.New("modem: woken for a reload")

// readWoken returns the next input chunk, or errWoken when a Reload came.
func (l *Line) readWoken(ctx context.Context, p *port) ([]byte, error) {
	if len(p.pending) > 0 {
		b := p.pending
		p.pending = nil
		return b, nil
	}
	select {
	case b, ok := <-p.rx:
		if !ok {
			return nil, p.rxErr
		}
		return b, nil
	case <-l.wake:
		return nil, errWoken
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// virtualDial is ATD on a virtual modem: the dial plan decides; CONNECT
// and a session, or BUSY / NO CARRIER per the X level.
func (l *Line) virtualDial(ctx context.Context, p *port, cfg LineConfig, eng *at.Engine, a at.Action) error {
	l.setState(StateAnswering, "dialling "+a.Number, "")
	route := Route{Service: ServicePPP}
	if l.opts.Dial != nil {
		wait := time.Duration(eng.Regs[7]) * time.Second
		if wait <= 0 {
			wait = 60 * time.Second
		}
		dctx, cancel := context.WithTimeout(ctx, wait)
		r, err := l.opts.Dial(dctx, cfg.Name, a.Number)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			f := at.FailNoCarrier
			switch {
			case errors.Is(err, ErrBusy):
				f = at.FailBusy
			case errors.Is(err, ErrNoDialtone):
				f = at.FailNoDialtone
			case errors.Is(err, ErrNoAnswer), errors.Is(err, context.DeadlineExceeded):
				f = at.FailNoAnswer
			}
			l.log.Info("dial failed", "number", a.Number, "err", err)
			return p.write(eng.Result(eng.FailureText(f)))
		}
		route = r
	}
	kind := sessionKind{loginOnly: route.Service == ServiceLogin}
	if isBridge(route) {
		// The host must answer before the caller hears CONNECT.
		remote, err := dialService(ctx, route)
		if err != nil {
			l.log.Warn("bridge: cannot reach the host", "number", a.Number, "err", err)
			return p.write(eng.Result(eng.FailureText(at.FailNoAnswer)))
		}
		kind = bridgeKind(remote)
	}
	speed := cfg.ConnectSpeed
	if speed <= 0 {
		speed = cfg.Speed
	}
	text := eng.ConnectText(speed)
	if err := p.write(eng.Result(text)); err != nil {
		return err
	}
	l.log.Info("dialled", "number", a.Number, "service", route.Service, "target", route.Target, "connect", text)
	return l.virtualSession(ctx, p, cfg, eng, at.Connection{Speed: speed, Result: text}, kind)
}

// virtualSession runs one call's session with +++ and DTR watched, then
// returns the line to command mode.
func (l *Line) virtualSession(ctx context.Context, p *port, cfg LineConfig, eng *at.Engine, cn at.Connection, kind sessionKind) error {
	v := &virtualCall{eng: eng, speed: cn.Speed, dtrHangup: eng.AmpD >= 2}
	kind.virtual = v
	l.mu.Lock()
	l.session++
	sess := fmt.Sprintf("%s/%d", cfg.Name, l.session)
	l.status.Answered++
	l.status.LastConnect, l.status.Speed, l.status.Protocol = cn.Result, cn.Speed, cn.Protocol
	l.status.Session = sess
	callerID := l.callerID
	l.status.CallerID = callerID
	l.mu.Unlock()
	l.publish(bus.ModemConnected{Line: cfg.Name, Speed: cn.Speed, Protocol: cn.Protocol, Result: cn.Result})
	l.setState(StateConnected, cn.Result, "")
	kind.stream = p.stream
	err := l.session1(ctx, p, cfg, cn, "", callerID, kind)
	if isDeviceErr(err) || ctx.Err() != nil {
		return err
	}
	l.setState(StateHangingup, "", "")
	eng.Reset()
	switch {
	case v.hungUp:
		// ATH's OK was the result.
	case errors.Is(err, ErrDTRDrop):
		l.log.Info("DTE dropped DTR: hung up")
	default:
		// The far end (the session) ended the call.
		if err := p.write(eng.Result("NO CARRIER")); err != nil {
			return err
		}
	}
	l.log.Info("call over", errAttr(err))
	return nil
}

// sessionKind says how session1 runs a call.
type sessionKind struct {
	direct    bool         // no login, no carrier watch: PPP at once
	stream    bool         // a TCP connection: its end is the carrier
	loginOnly bool         // the text login even with AutoPPP configured
	virtual   *virtualCall // the box is the modem: watch +++ and DTR
	// handler, when set, runs the call instead of LineOptions.Handler,
	// without a login (a bridge to a BBS).
	handler func(ctx context.Context, c Conn, user string) error
}

// pumpVirtual moves the DTE's data to the session, watching for the
// escape: +++ with the guard time puts the modem in online-command mode,
// where ATH hangs up and ATO goes back to data.
func (l *Line) pumpVirtual(v *virtualCall) {
	c, eng := v.c, v.eng
	var esc at.Escape
	esc.Reset(l.clk.Now())
	var guard Timer
	defer func() {
		if guard != nil {
			guard.Stop()
		}
	}()
	command := false
	deliver := func(b []byte) bool {
		select {
		case c.in <- b:
			return true
		case <-c.ctx.Done():
			return false
		}
	}
	for {
		var fire <-chan time.Time
		if guard != nil {
			fire = guard.C()
		}
		select {
		case b, ok := <-c.p.rx:
			if !ok {
				c.cancel(c.p.rxErr)
				return
			}
			now := l.clk.Now()
			if command {
				out, acts, rest := eng.Feed(b)
				c.p.write(out)
				for _, a := range acts {
					switch a.Kind {
					case at.ActHangup:
						v.hungUp = true
						c.cancel(ErrHungUp)
						return
					case at.ActOnline:
						c.p.write(eng.Result(eng.ConnectText(v.speed)))
						command = false
						c.paused.Store(false)
						esc.Reset(now)
						if len(rest) > 0 && !deliver(rest) {
							return
						}
					case at.ActDial, at.ActAnswer:
						c.p.write(eng.Result("ERROR")) // a call is up
					default: // nothing to do for the other actions
					}
				}
				continue
			}
			if guard != nil {
				guard.Stop()
				guard = nil
			}
			if esc.Data(b, now, eng) {
				guard = l.clk.NewTimer(eng.Guard())
			}
			// The escape characters are data too, as on a real modem.
			if !deliver(b) {
				return
			}
		case <-fire:
			guard = nil
			if esc.Armed() {
				command = true
				c.paused.Store(true)
				esc.Reset(l.clk.Now())
				c.p.write(eng.Result("OK"))
				l.log.Info("escape: online-command mode")
			}
		case <-c.ctx.Done():
			return
		}
	}
}

// watchDTR hangs up when the DTE drops DTR. On a serial port the DTE's DTR
// reaches us as DSR through the null-modem cable; a pty has no modem
// lines, so the DTE drops DTR the POSIX way, speed B0, which the master
// side sets on the tty's termios.
func (l *Line) watchDTR(ctx context.Context, c *conn) {
	for {
		if l.sleep(ctx, l.t.dcdPoll) {
			return
		}
		low, err := c.p.dtrLow()
		if err != nil {
			c.cancel(err)
			return
		}
		if low {
			c.cancel(ErrDTRDrop)
			return
		}
	}
}

// dtrLow reports whether the DTE's DTR is down (see watchDTR).
func (p *port) dtrLow() (bool, error) {
	if p.stream {
		return false, nil
	}
	if p.caps.modemLines {
		st, err := p.modemBits()
		if err != nil {
			return false, fmt.Errorf("%w: TIOCMGET %s: %w", errVanished, p.real, err)
		}
		return st&unix.TIOCM_DSR == 0, nil
	}
	t, err := unix.IoctlGetTermios(p.ctl, unix.TCGETS)
	if err != nil {
		return false, fmt.Errorf("%w: TCGETS %s: %w", errVanished, p.real, err)
	}
	return t.Cflag&unix.CBAUD == unix.B0, nil
}
