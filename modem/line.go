package modem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/clock"
	"github.com/isp-box/isp-box/internal/status"
	"github.com/isp-box/isp-box/modem/lock"
)

// LineOptions is what internal/box gives a Line besides its config.
type LineOptions struct {
	Bus *bus.Bus     // may be nil
	Log *slog.Logger // may be nil
	// Handler runs a session (the box passes ppp.Serve). It returns when the
	// session ends; ctx is cancelled when the line shuts down, while carrier
	// loss and hang-up make c's Read fail (ErrCarrierLost, ErrClosed) within 1 s.
	// loggedInUser is the user of a text login, "" for AutoPPP and direct
	// lines.
	Handler func(ctx context.Context, c Conn, loggedInUser string) error
	// DetectPPP decides whether b (starting at a 0x7E flag) is a PPP frame
	// (ppp.Detect, injected: modem does not import ppp). Nil means mgetty's
	// own test, DetectPPPFrame.
	DetectPPP func(b []byte) (isPPP, decided bool)
	// CheckLogin checks a text login against [users].
	CheckLogin func(user, password string) bool
	// Clock is the time source of every wait; nil is the real clock.
	Clock Clock
	// Dial resolves a number dialled on a virtual modem (ATD) through the
	// dial plan: the Route, or ErrBusy, ErrNoAnswer, ErrNoDialtone, or
	// another error (NO CARRIER). ctx ends with the S7 wait. Nil: every
	// number connects to ServicePPP.
	Dial func(ctx context.Context, line, number string) (Route, error)
	// Service says what answers the SIP call callID that a hardware line
	// just answered (the dial plan's PPP(), Login(), Telnet(), TCP() for
	// the number the caller dialled). Nil, or ServicePPP: the line's
	// login/AutoPPP and Handler.
	Service func(ctx context.Context, line, callID string) Route
}

// logAndClock returns the logger of line name and the clock, the defaults
// where o leaves them nil.
func (o LineOptions) logAndClock(name string) (*slog.Logger, Clock) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clk := o.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	return log.With("comp", "modem", "line", name), clk
}

// timing holds the fixed intervals of mgetty's job; tests shorten them.
type timing struct {
	ringGap        time.Duration // ring.c ring_chat_timeout: 10 s between RINGs
	chat           time.Duration // init chat, per expect: 20 s
	backoffMin     time.Duration // reopen/reset backoff: 1 s, doubling
	backoffMax     time.Duration // to 30 s
	lockRetry      time.Duration // a live foreign lock is retried every 5 s
	ctsWait        time.Duration // CTS must rise within 2 s
	dcdPoll        time.Duration // carrier watch: 100 ms
	loginGrace     time.Duration // the "one minute left"
	loginFailDelay time.Duration // after a wrong password
	pause          time.Duration // chat's \d: 500 ms
	drain          time.Duration // before a hang-up: time for the modem to send its buffer
}

func defaultTiming() timing {
	return timing{ringGap: 10 * time.Second, chat: 20 * time.Second, backoffMin: time.Second, backoffMax: 30 * time.Second,
		lockRetry: 5 * time.Second, ctsWait: 2 * time.Second, dcdPoll: 100 * time.Millisecond,
		loginGrace: time.Minute, loginFailDelay: time.Second, pause: 500 * time.Millisecond,
		drain: 250 * time.Millisecond}
}

// Line is one modem line doing mgetty's job in process: see State for the
// cycle. Create with NewLine, run with Run.
type Line struct {
	opts LineOptions
	log  *slog.Logger
	t    timing
	clk  Clock

	mu     sync.Mutex // guards the fields below
	cfg    LineConfig
	reload *LineConfig
	wake   chan struct{} // Reload pokes an idle line (cap 1)
	status LineStatus
	callID string // the SIP call for the peer seen on the bus
	// callerID is what a line knows of its caller for every call: the
	// client's address on a TCP line.
	callerID string
	callAt   time.Time // when it was seen
	session  int

	lastState bus.LineState // the last LineState published
}

// LineStatus is a snapshot of a line for `isp-box lines` (internal/status's).
type LineStatus = status.Line

// NewLine checks cfg and returns a line ready to Run.
func NewLine(cfg LineConfig, opts LineOptions) (*Line, error) {
	if cfg.Device == "" {
		return nil, fmt.Errorf("modem: line %q: no device", cfg.Name)
	}
	if cfg.Name == "" {
		cfg.Name = strings.TrimPrefix(cfg.Device, "/dev/")
	}
	if cfg.Kind != "" && cfg.Kind != KindModem && cfg.Kind != KindVirtual && cfg.Kind != KindTCP {
		return nil, fmt.Errorf("modem: line %s: kind %q: want %s, %s or %s", cfg.Name, cfg.Kind, KindModem, KindVirtual, KindTCP)
	}
	if cfg.FlowControl != "" && cfg.FlowControl != "hard" && cfg.FlowControl != "none" {
		return nil, fmt.Errorf("modem: line %s: flow control %q: want hard or none", cfg.Name, cfg.FlowControl)
	}
	log, clk := opts.logAndClock(cfg.Name)
	l := &Line{opts: opts, log: log, t: defaultTiming(), clk: clk, cfg: cfg, wake: make(chan struct{}, 1)}
	l.status = LineStatus{Name: cfg.Name, Device: cfg.Device, Peer: cfg.Peer, State: "down", Since: clk.Now()}
	return l, nil
}

// Status returns a snapshot.
func (l *Line) Status() LineStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

// Reload replaces the config. A line that is waiting (open backoff, a lock
// held by another program, idle between calls) takes it at once; a call in
// progress is not disturbed and the config applies when it ends. A changed
// device reopens. Until it is applied, Status().Pending says so.
func (l *Line) Reload(cfg LineConfig) {
	l.mu.Lock()
	l.reload = &cfg
	if inCallState(l.status.State) {
		l.status.Pending = "config reloaded; applies when the call ends"
	} else {
		l.status.Pending = "config reloaded; applying"
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Line) config() LineConfig {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

func (l *Line) setState(s State, detail, callID string) {
	name := strings.ToLower(s.String())
	l.mu.Lock()
	changed := l.status.State != name
	if changed {
		l.status.State, l.status.Since = name, l.clk.Now()
	}
	if s == StateIdle || s == StateDown {
		l.status.CallID, l.status.CallerID, l.status.Session, l.status.User = "", "", "", ""
	}
	ev := bus.LineState{Line: l.cfg.Name, Peer: l.cfg.Peer, State: bus.LineStatus(name), Detail: detail, CallID: callID}
	// The same state again with nothing new (idle after idle) is not news;
	// RING 2 after RING 1 is.
	repeat := ev == l.lastState
	l.lastState = ev
	l.mu.Unlock()
	if changed {
		l.log.Debug("state", "state", name, "detail", detail)
	}
	if !repeat {
		l.publish(ev)
	}
}

func (l *Line) publish(ev bus.Event) {
	if l.opts.Bus != nil {
		l.opts.Bus.Publish(ev)
	}
}

// fail counts and reports an error.
func (l *Line) fail(err error) {
	l.mu.Lock()
	l.status.Errors++
	l.status.LastError = err.Error()
	name := l.cfg.Name
	l.mu.Unlock()
	l.log.Warn("line error", "err", err)
	l.publish(bus.ModemError{Line: name, Err: err.Error()})
}

// Run does the line's job until ctx is done: open (retrying with backoff
// while the device is missing or locked by another program), reset, init,
// wait for calls, answer, hand each call to the Handler, hang up, re-init.
// On return DTR has been dropped, the lock removed and the port closed. It
// returns nil once ctx is done.
func (l *Line) Run(ctx context.Context) error {
	if l.opts.Bus != nil && l.config().Peer != "" {
		sub := l.opts.Bus.Subscribe("modem:"+l.config().Name, 64, func(ev bus.Event) bool {
			switch ev.(type) {
			case bus.CallStarted, bus.CallRinging, bus.CallEnded:
				return true
			}
			return false
		})
		var wg sync.WaitGroup
		defer wg.Wait()
		defer sub.Close() // ends watchCalls
		wg.Add(1)
		go func() { defer wg.Done(); l.watchCalls(ctx, sub) }()
	}
	backoff := l.t.backoffMin
	lastOpenErr := ""
	for ctx.Err() == nil {
		l.applyReload()
		cfg := l.config()
		l.setState(StateOpening, cfg.Device, "")
		p, lk, err := l.open(ctx, cfg)
		if errors.Is(err, errReopen) {
			continue // a reload came while the port was locked
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// A missing adapter fails the same way every few seconds:
			// report it once, not at every retry.
			if err.Error() != lastOpenErr {
				l.fail(err)
				lastOpenErr = err.Error()
			} else {
				l.log.Debug("still cannot open", "err", err)
			}
			// A reload (a corrected device path) or shutdown ends the
			// wait at once; a new config deserves a fresh first try.
			if l.backoff(ctx, backoff) {
				backoff = l.t.backoffMin
			} else {
				backoff = min(backoff*2, l.t.backoffMax)
			}
			continue
		}
		lastOpenErr = ""
		l.mu.Lock()
		l.status.Caps = p.caps.String()
		// The port works again: an old error would read as a current
		// problem in `isp-box lines` (Errors still counts it).
		l.status.LastError = ""
		l.mu.Unlock()
		start := l.clk.Now()
		err = l.serve(ctx, p, cfg)
		l.shutdown(p, lk, cfg, ctx.Err() != nil)
		if ctx.Err() != nil {
			break
		}
		if err != nil && !errors.Is(err, errReopen) {
			l.fail(err)
		}
		if l.clk.Now().Sub(start) > l.t.backoffMax {
			backoff = l.t.backoffMin // it worked for a while
		}
		if !errors.Is(err, errReopen) {
			if l.backoff(ctx, backoff) {
				backoff = l.t.backoffMin
			} else {
				backoff = min(backoff*2, l.t.backoffMax)
			}
		}
	}
	l.setState(StateDown, "", "")
	return nil
}

var errReopen = errors.New("modem: reopen for a new config")

// sleep waits d or until ctx ends; it reports whether ctx ended. Waits
// that must run their full length whatever the config (DTR held low, guard
// times around +++) use it.
func (l *Line) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() != nil
	}
	cancelled, _ := clockWait(ctx, l.clk, d, nil)
	return cancelled
}

// backoff waits d, or until a Reload or ctx ends it early; it reports
// whether a reload did (the caller applies it at once).
func (l *Line) backoff(ctx context.Context, d time.Duration) (reloaded bool) {
	_, reloaded = clockWait(ctx, l.clk, d, l.wake)
	return reloaded
}

// clockWait waits d on clk, or until ctx ends (cancelled) or wake receives
// (woken); a nil wake never does.
func clockWait(ctx context.Context, clk Clock, d time.Duration, wake <-chan struct{}) (cancelled, woken bool) {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return false, false
	case <-ctx.Done():
		return true, false
	case <-wake:
		return false, true
	}
}

// applyReload takes a pending config. changed: there was one (the modem is
// re-initialised); reopen: the port itself must be reopened.
func (l *Line) applyReload() (changed, reopen bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reload == nil {
		return false, false
	}
	old := l.cfg
	l.cfg, l.reload = *l.reload, nil
	l.status.Device, l.status.Peer = l.cfg.Device, l.cfg.Peer
	l.status.Pending = ""
	l.log.Info("config reloaded")
	return true, old.Device != l.cfg.Device || old.Speed != l.cfg.Speed || old.FlowControl != l.cfg.FlowControl ||
		old.Direct != l.cfg.Direct || old.Lock != l.cfg.Lock || old.LockDir != l.cfg.LockDir || old.Local != l.cfg.Local
}

// open takes the UUCP lock (waiting while a live process holds it) and
// opens the port.
func (l *Line) open(ctx context.Context, cfg LineConfig) (*port, *lock.Lock, error) {
	var lk *lock.Lock
	if cfg.Lock {
		dir := cfg.LockDir
		if dir == "" {
			dir = "/var/lock"
		}
		lastHeld := ""
		for {
			var err error
			lk, err = lock.Acquire(dir, cfg.Device, os.Getpid())
			if err == nil {
				break
			}
			var le *lock.LockedError
			if !errors.As(err, &le) {
				return nil, nil, err
			}
			// Another program (minicom, cu, a dial-out) has the line:
			// wait for it, as mgetty does, and say so once per holder.
			held := fmt.Sprintf("locked by pid %d", le.PID)
			if comm := procComm(le.PID); comm != "" {
				held = fmt.Sprintf("locked by %s (pid %d)", comm, le.PID)
			}
			if held != lastHeld {
				lastHeld = held
				l.log.Warn("waiting for another program's UUCP lock", "device", cfg.Device, "lock", filepath.Join(dir, "LCK.."+filepath.Base(cfg.Device)), "holder", held)
				l.mu.Lock()
				l.status.LastError = held + " (UUCP lock in " + dir + "); waiting for it to end"
				l.mu.Unlock()
			}
			l.setState(StateOpening, held, "")
			if l.backoff(ctx, l.t.lockRetry) {
				return nil, nil, errReopen
			}
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
		}
	}
	p, err := openPort(ctx, cfg, l.t.ctsWait, l.clk)
	if err != nil {
		lk.Release()
		return nil, nil, err
	}
	if err := applyOwnership(p.real, cfg); err != nil {
		l.log.Warn("port ownership", "err", err) // not fatal: mgetty only logs it too
	}
	l.log.Info("opened", "device", cfg.Device, "tty", p.real, "caps", p.caps.String())
	return p, lk, nil
}

// shutdown closes the port: DTR dropped when the box stops (so the modem
// hangs up), lock released.
func (l *Line) shutdown(p *port, lk *lock.Lock, cfg LineConfig, final bool) {
	if final && !cfg.Local {
		p.setDTR(false)
	}
	p.close()
	p.wait()
	if err := lk.Release(); err != nil {
		l.log.Warn("unlock", "err", err)
	}
}

// serve runs the modem cycle on an open port until the device fails or
// ctx ends.
func (l *Line) serve(ctx context.Context, p *port, cfg LineConfig) error {
	if cfg.Direct {
		return l.serveDirect(ctx, p, cfg)
	}
	if cfg.Kind == KindVirtual {
		return l.serveVirtual(ctx, p, cfg)
	}
	backoff := l.t.backoffMin
	needReset := true
	for ctx.Err() == nil {
		if needReset {
			l.setState(StateResetting, "", "")
			if err := l.toggleDTR(ctx, p, cfg); err != nil {
				return err
			}
		}
		l.setState(StateInitialising, "", "")
		if err := l.initModem(ctx, p, cfg); err != nil {
			if isDeviceErr(err) || ctx.Err() != nil {
				return err
			}
			l.fail(fmt.Errorf("modem on %s not responding, resetting: %w", cfg.Device, err))
			needReset = true
			if l.backoff(ctx, backoff) {
				backoff = l.t.backoffMin
				if changed, reopen := l.applyReload(); reopen {
					return errReopen
				} else if changed {
					cfg = l.config()
				}
				continue
			}
			backoff = min(backoff*2, l.t.backoffMax)
			continue
		}
		backoff = l.t.backoffMin
		needReset = false
		err := l.idle(ctx, p, &cfg)
		switch {
		case errors.Is(err, errReopen):
			return err
		case errors.Is(err, errReinit):
			l.log.Debug("re-initialising for the new config")
		case errors.Is(err, errSilent):
			l.fail(fmt.Errorf("modem on %s stopped answering AT, resetting", cfg.Device))
			needReset = true
		case err != nil && (isDeviceErr(err) || ctx.Err() != nil):
			return err
		case err != nil:
			l.log.Info("call ended", "err", err)
		}
	}
	return ctx.Err()
}

var (
	errSilent = errors.New("modem: silent")
	errReinit = errors.New("modem: re-init for a new config")
)

func isDeviceErr(err error) bool {
	return errors.Is(err, errVanished) || errors.Is(err, errClosedPort)
}
