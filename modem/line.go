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
	"github.com/isp-box/isp-box/internal/status"
	"github.com/isp-box/isp-box/modem/at"
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
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clk := opts.Clock
	if clk == nil {
		clk = realClock{}
	}
	l := &Line{opts: opts, log: log.With("comp", "modem", "line", cfg.Name), t: defaultTiming(), clk: clk, cfg: cfg, wake: make(chan struct{}, 1)}
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
	t := l.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return false
	case <-ctx.Done():
		return true
	}
}

// backoff waits d, or until a Reload or ctx ends it early; it reports
// whether a reload did (the caller applies it at once).
func (l *Line) backoff(ctx context.Context, d time.Duration) (reloaded bool) {
	t := l.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return false
	case <-ctx.Done():
		return false
	case <-l.wake:
		return true
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

// toggleDTR resets the modem: DTR low for toggle-dtr-waittime (mgetty
// tio_toggle_dtr; with &D3 that is a hang-up and ATZ), input flushed.
func (l *Line) toggleDTR(ctx context.Context, p *port, cfg LineConfig) error {
	if cfg.ToggleDTR && !cfg.Local {
		if err := p.setDTR(false); err != nil {
			return err
		}
		wait := cfg.ToggleDTRWait
		if wait <= 0 {
			wait = 500 * time.Millisecond
		}
		// On shutdown DTR stays low: the port closes with it down.
		if l.sleep(ctx, wait) {
			return ctx.Err()
		}
		if err := p.setDTR(true); err != nil {
			return err
		}
		if l.sleep(ctx, wait/5) { // let the modem come back before talking to it
			return ctx.Err()
		}
	}
	return p.flush()
}

// initModem runs init-chat; when the modem does not answer, force-init-chat
// and init-chat again (mgetty.c).
func (l *Line) initModem(ctx context.Context, p *port, cfg LineConfig) error {
	chat := cfg.InitChat
	if len(chat) == 0 {
		chat = at.DefaultInitChat
	}
	if err := p.flush(); err != nil {
		return err
	}
	err := l.chat(ctx, p, chat)
	if err == nil || isDeviceErr(err) || ctx.Err() != nil {
		return err
	}
	l.log.Warn("init chat failed, trying force-init", "err", err)
	if err := l.chat(ctx, p, at.ForceInitChat); err != nil {
		return err
	}
	if err := p.flush(); err != nil {
		return err
	}
	return l.chat(ctx, p, chat)
}

var errChatAbort = errors.New("modem: chat aborted")

// chat runs an expect/send script (mgetty do_chat): each expect must appear
// in a line within the chat timeout; ERROR, BUSY and NO CARRIER abort.
func (l *Line) chat(ctx context.Context, p *port, words []string) error {
	for _, st := range at.ParseChat(words) {
		if st.Expect != "" {
			if err := l.expect(ctx, p, st.Expect, l.t.chat); err != nil {
				return err
			}
		}
		if st.Send != "" {
			if err := l.send(ctx, p, st.Send); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Line) expect(ctx context.Context, p *port, want string, d time.Duration) error {
	deadline := l.clk.Now().Add(d)
	for {
		line, err := p.readLine(ctx, deadline.Sub(l.clk.Now()))
		if err != nil {
			return fmt.Errorf("expecting %q: %w", want, err)
		}
		l.log.Debug("modem said", "text", line)
		if strings.Contains(line, want) {
			return nil
		}
		switch at.ParseResult(line).Code {
		case at.Error, at.Busy, at.NoCarrier:
			return fmt.Errorf("expecting %q, got %q: %w", want, line, errChatAbort)
		default: // keep reading
		}
	}
}

// send writes a chat send string with its escapes; mgetty waits 50 ms
// before each send (DO_CHAT_SEND_DELAY).
func (l *Line) send(ctx context.Context, p *port, s string) error {
	if l.sleep(ctx, l.t.pause/10) {
		return ctx.Err()
	}
	for _, pc := range at.ExpandSend(s, l.t.pause) {
		if pc.Pause > 0 {
			l.sleep(ctx, pc.Pause)
			continue
		}
		l.log.Debug("to modem", "data", string(pc.Data))
		if err := p.write(pc.Data); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// idle waits for RING (or the modem's own CONNECT after auto-answer) and
// checks the modem every modem-check-time. It returns after one call, so
// the caller re-inits.
func (l *Line) idle(ctx context.Context, p *port, cfg *LineConfig) error {
	for {
		if changed, reopen := l.applyReload(); reopen {
			return errReopen
		} else if changed {
			*cfg = l.config()
			return errReinit
		}
		l.setState(StateIdle, "", "")
		check := cfg.ModemCheck
		if check <= 0 {
			check = time.Hour
		}
		// A Reload wakes the wait so it applies now, not after the next call.
		ictx, icancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-l.wake:
				icancel()
			case <-ictx.Done():
			}
		}()
		line, err := p.readLine(ictx, check)
		icancel()
		if errors.Is(err, context.Canceled) && ctx.Err() == nil {
			continue
		}
		if errors.Is(err, errTimeout) {
			if err := l.checkModem(ctx, p); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		r := at.ParseResult(line)
		switch r.Code {
		case at.Ring:
			return l.call(ctx, p, *cfg, r)
		case at.Connect, at.Carrier, at.Protocol, at.Compression:
			// The modem answered by itself (S0 > 0).
			var cn at.Connection
			cn.Merge(r)
			if r.Code == at.Connect {
				return l.connected(ctx, p, *cfg, l.currentCall(), "", cn)
			}
			return l.waitConnect(ctx, p, *cfg, l.currentCall(), "", cn, "auto-answer")
		default:
			l.log.Debug("junk on the line", "line", line)
		}
	}
}

// checkModem is mgetty's modem-check-time test: AT, twice, wants OK.
func (l *Line) checkModem(ctx context.Context, p *port) error {
	for try := 0; try < 2; try++ {
		if err := p.flush(); err != nil {
			return err
		}
		if err := l.send(ctx, p, "AT"); err != nil {
			return err
		}
		err := l.expect(ctx, p, "OK", l.t.chat)
		if err == nil {
			return nil
		}
		if isDeviceErr(err) || ctx.Err() != nil {
			return err
		}
	}
	return errSilent
}

// call counts RINGs (rings, at most ring-gap apart), answers and runs the
// session.
func (l *Line) call(ctx context.Context, p *port, cfg LineConfig, first at.Result) error {
	callID := l.currentCall()
	rings := cfg.Rings
	if rings < 1 {
		rings = 1
	}
	count, callerID := 0, ""
	r := first
	for {
		switch r.Code {
		case at.Ring:
			count++
			l.setState(StateRinging, fmt.Sprintf("RING %d", count), callID)
			l.publish(bus.LineRing{Line: cfg.Name, Count: count, CallerID: callerID, CallID: callID})
		case at.Connect: // auto-answered meanwhile
			var cn at.Connection
			cn.Merge(r)
			return l.connected(ctx, p, cfg, callID, callerID, cn)
		default: // the other values: after the switch
		}
		if count >= rings {
			break
		}
		line, err := p.readLine(ctx, l.t.ringGap)
		if errors.Is(err, errTimeout) {
			l.log.Info("phone stopped ringing", "rings", count)
			return nil
		}
		if err != nil {
			return err
		}
		if id, ok := strings.CutPrefix(line, "NMBR"); ok { // caller id between rings
			callerID = strings.TrimSpace(strings.TrimLeft(id, " =:"))
		}
		r = at.ParseResult(line)
		if callID == "" {
			callID = l.currentCall()
		}
	}
	l.mu.Lock()
	l.status.CallID, l.status.CallerID = callID, callerID
	l.mu.Unlock()

	l.setState(StateAnswering, "", callID)
	cmd := cfg.AnswerCommand
	if cmd == "" {
		cmd = "ATA"
	}
	if err := l.send(ctx, p, cmd); err != nil {
		return err
	}
	return l.waitConnect(ctx, p, cfg, callID, callerID, at.Connection{}, cmd)
}

// waitConnect reads the modem's answer up to CONNECT, merging Rockwell's
// CARRIER/PROTOCOL/COMPRESSION lines (mgetty cnd.c), within answer-chat-timeout.
func (l *Line) waitConnect(ctx context.Context, p *port, cfg LineConfig, callID, callerID string, cn at.Connection, cmd string) error {
	timeout := cfg.AnswerTimeout
	if timeout <= 0 {
		timeout = 80 * time.Second
	}
	deadline := l.clk.Now().Add(timeout)
	for {
		line, err := p.readLine(ctx, deadline.Sub(l.clk.Now()))
		if errors.Is(err, errTimeout) {
			l.fail(fmt.Errorf("no CONNECT within %s of %s", timeout, cmd))
			p.write([]byte("\r")) // any character aborts the answer
			return l.hangup(ctx, p, cfg, callID)
		}
		if err != nil {
			return err
		}
		res := at.ParseResult(line)
		cn.Merge(res)
		switch res.Code {
		case at.Connect:
			return l.connected(ctx, p, cfg, callID, callerID, cn)
		case at.NoCarrier, at.Busy, at.Error, at.NoAnswer, at.NoDialtone:
			l.fail(fmt.Errorf("answer failed: %s", line))
			return l.hangup(ctx, p, cfg, callID)
		default: // keep waiting
		}
	}
}

// currentCall is the SIP call ringing this line's peer, if one was seen in
// the last minute.
func (l *Line) currentCall() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.callID != "" && l.clk.Now().Sub(l.callAt) < time.Minute {
		return l.callID
	}
	return ""
}

func (l *Line) watchCalls(ctx context.Context, sub *bus.Sub) {
	for {
		select {
		case env, ok := <-sub.C():
			if !ok {
				return
			}
			peer := l.config().Peer
			l.mu.Lock()
			switch ev := env.Event.(type) {
			case bus.CallStarted:
				if ev.Target == peer {
					l.callID, l.callAt = ev.CallID, l.clk.Now()
				}
			case bus.CallRinging:
				if ev.Callee == peer {
					l.callID, l.callAt = ev.CallID, l.clk.Now()
				}
			case bus.CallEnded:
				if ev.CallID == l.callID {
					l.callID = ""
				}
			}
			l.mu.Unlock()
		case <-ctx.Done():
			return
		}
	}
}

// connected runs one session on the answered call: login or AutoPPP, the
// Handler, then the hang-up.
func (l *Line) connected(ctx context.Context, p *port, cfg LineConfig, callID, callerID string, cn at.Connection) error {
	l.mu.Lock()
	l.session++
	sess := fmt.Sprintf("%s/%d", cfg.Name, l.session)
	l.status.Answered++
	l.status.LastConnect, l.status.Speed, l.status.Protocol = cn.Result, cn.Speed, cn.Protocol
	l.status.Session, l.status.CallID, l.status.CallerID = sess, callID, callerID
	l.mu.Unlock()
	l.publish(bus.ModemConnected{Line: cfg.Name, Speed: cn.Speed, Protocol: cn.Protocol, Result: cn.Result, CallID: callID})
	l.setState(StateConnected, cn.Result, callID)
	if cfg.Autobauding && cn.Speed > 0 {
		if err := p.setSpeed(cn.Speed); err != nil {
			l.log.Warn("autobauding", "err", err)
		}
	}

	kind := sessionKind{}
	if l.opts.Service != nil && callID != "" {
		// The number the caller dialled picks the service.
		r := l.opts.Service(ctx, cfg.Name, callID)
		switch {
		case r.Service == ServiceLogin:
			kind.loginOnly = true
		case isBridge(r):
			remote, err := dialService(ctx, r)
			if err != nil {
				l.fail(fmt.Errorf("bridge for call %s: %w", callID, err))
				return l.hangup(ctx, p, cfg, callID)
			}
			l.log.Info("bridging the call", "call", callID, "service", r.Service, "target", r.Target)
			kind = bridgeKind(remote)
		}
	}
	err := l.session1(ctx, p, cfg, cn, callID, callerID, kind)
	if isDeviceErr(err) || ctx.Err() != nil {
		return err
	}
	return l.hangup(ctx, p, cfg, callID)
}

// session1 builds the Conn, starts the carrier watch, runs login (unless
// direct) and the Handler.
func (l *Line) session1(ctx context.Context, p *port, cfg LineConfig, cn at.Connection, callID, callerID string, kind sessionKind) error {
	direct := kind.direct
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := &conn{line: cfg.Name, speed: cn.Speed, protocol: cn.Protocol, callerID: callerID, callID: callID,
		p: p, ctx: sctx, cancel: cancel, in: make(chan []byte, 64)}
	if kind.virtual != nil {
		kind.virtual.c = c
	}
	// What came right after "CONNECT ...\r" is the caller's first data.
	rest := p.pending
	p.pending = nil
	if len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
	}
	c.replay = rest

	hasDCD := p.caps.modemLines && !cfg.IgnoreCarrier && !cfg.Local && !direct && kind.virtual == nil && !kind.stream
	var wg sync.WaitGroup
	wg.Add(1)
	if v := kind.virtual; v != nil {
		// The box is the modem: it watches for +++ and the DTE's DTR.
		go func() { defer wg.Done(); l.pumpVirtual(v) }()
		if v.dtrHangup {
			wg.Add(1)
			go func() { defer wg.Done(); l.watchDTR(sctx, c) }()
		}
	} else {
		go func() { defer wg.Done(); c.pump(!hasDCD && !direct && !kind.stream) }()
	}
	if hasDCD {
		wg.Add(1)
		go func() { defer wg.Done(); l.watchDCD(sctx, c) }()
	}
	defer wg.Wait()
	defer cancel(nil)

	user := ""
	if !direct && kind.handler == nil {
		var err error
		if kind.loginOnly {
			cfg.AutoPPP = false
		}
		user, err = l.login(sctx, c, cfg, cn.Result)
		if err != nil {
			l.log.Info("no login", "err", err)
			return sessionErr(sctx, err)
		}
		l.mu.Lock()
		l.status.User = user
		l.mu.Unlock()
	}
	handler := l.opts.Handler
	if kind.handler != nil {
		handler = kind.handler
	}
	if handler == nil {
		return errors.New("modem: no handler")
	}
	start := l.clk.Now()
	// The handler's context ends only with the line: carrier loss and
	// hang-up reach it as Read errors on c (ErrCarrierLost, ErrClosed), so
	// PPP records them as a lost line, not as the box shutting down, and
	// does not send a Terminate-Request into a dead line.
	err := handler(ctx, c, user)
	cause := context.Cause(sctx)
	l.log.Info("session over", "after", l.clk.Now().Sub(start).Round(time.Millisecond), errAttr(err), "cause", cause)
	return sessionErr(sctx, err)
}

// sessionErr prefers a device failure (so the line reopens) over what the
// handler returned.
func sessionErr(sctx context.Context, err error) error {
	if c := context.Cause(sctx); c != nil && isDeviceErr(c) {
		return c
	}
	return err
}

// watchDCD polls carrier detect (go.bug.st/serial has no TIOCMIWAIT; a
// blocked TIOCMIWAIT cannot be cancelled either): DCD low ends the session.
func (l *Line) watchDCD(ctx context.Context, c *conn) {
	for {
		if l.sleep(ctx, l.t.dcdPoll) {
			return
		}
		{
			on, _, err := c.p.dcd()
			if err != nil {
				c.cancel(err)
				return
			}
			if !on {
				c.cancel(ErrCarrierLost)
				return
			}
		}
	}
}

// hangup ends a call: DTR drop (B0 on ptys) for toggle-dtr-waittime, or
// with `local` the escape and ATH; then input flushed.
func (l *Line) hangup(ctx context.Context, p *port, cfg LineConfig, callID string) error {
	l.setState(StateHangingup, "", callID)
	// The last words ("Login incorrect", PPP's Terminate-Ack) are still in
	// the tty and the modem's buffer: let them go out before DTR drops.
	// Every wait here ends with ctx: on shutdown the port closes with DTR
	// down, which hangs up as well.
	if l.drain(ctx, p, 2*time.Second) || l.sleep(ctx, l.t.drain) {
		return ctx.Err()
	}
	if cfg.Autobauding {
		if err := p.restoreSpeed(); err != nil {
			return err
		}
	}
	if cfg.Local || !cfg.ToggleDTR {
		if l.sleep(ctx, 1100*time.Millisecond) { // S12 guard time
			return ctx.Err()
		}
		p.write([]byte("+++"))
		if l.sleep(ctx, 1100*time.Millisecond) {
			return ctx.Err()
		}
		l.send(ctx, p, "ATH0")
		return p.flush()
	}
	return l.toggleDTR(ctx, p, cfg)
}

// drain waits until the tty's output queue is empty, at most max, or ctx
// ends (reported). Not tcdrain: with RTS/CTS and a dead modem that blocks
// forever, uninterruptibly.
func (l *Line) drain(ctx context.Context, p *port, max time.Duration) bool {
	deadline := l.clk.Now().Add(max)
	for l.clk.Now().Before(deadline) {
		if p.outq() == 0 {
			return false
		}
		if l.sleep(ctx, 10*time.Millisecond) {
			return true
		}
	}
	return false
}

// serveDirect is mgetty's `direct yes`: a null-modem cable, no AT at all,
// PPP at once, again and again.
func (l *Line) serveDirect(ctx context.Context, p *port, cfg LineConfig) error {
	for ctx.Err() == nil {
		if changed, reopen := l.applyReload(); reopen {
			return errReopen
		} else if changed {
			cfg = l.config()
		}
		l.mu.Lock()
		l.session++
		l.status.Session = fmt.Sprintf("%s/%d", cfg.Name, l.session)
		l.mu.Unlock()
		l.setState(StateConnected, "direct", "")
		err := l.session1(ctx, p, cfg, at.Connection{Speed: cfg.Speed}, "", "", sessionKind{direct: true})
		if isDeviceErr(err) || ctx.Err() != nil {
			return err
		}
		l.setState(StateHangingup, "direct", "")
		if err := p.flush(); err != nil {
			return err
		}
		l.backoff(ctx, l.t.backoffMin) // a reload is applied at the loop's top
	}
	return ctx.Err()
}

// inCallState reports whether a line in state s (State's lower-case names)
// carries a call.
func inCallState(s string) bool {
	switch s {
	case "ringing", "answering", "connected", "hangingup":
		return true
	}
	return false
}
