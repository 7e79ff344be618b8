package modem

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/modem/at"
)

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

	kind, err := l.serviceKind(ctx, cfg.Name, callID, sessionKind{})
	if err != nil {
		return l.hangup(ctx, p, cfg, callID)
	}
	err = l.session1(ctx, p, cfg, cn, callID, callerID, kind)
	if isDeviceErr(err) || ctx.Err() != nil {
		return err
	}
	return l.hangup(ctx, p, cfg, callID)
}

// serviceKind adds to kind the service the number the caller dialled
// picks: login only, or a bridge to a Telnet or TCP service, dialled
// here. A bridge that cannot be dialled is a failure of the line (logged
// and returned): the call is hung up.
func (l *Line) serviceKind(ctx context.Context, line, callID string, kind sessionKind) (sessionKind, error) {
	if l.opts.Service == nil || callID == "" {
		return kind, nil
	}
	r := l.opts.Service(ctx, line, callID)
	switch {
	case r.Service == ServiceLogin:
		kind.loginOnly = true
	case isBridge(r):
		remote, err := dialService(ctx, r)
		if err != nil {
			err = fmt.Errorf("bridge for call %s: %w", callID, err)
			l.fail(err)
			return kind, err
		}
		l.log.Info("bridging the call", "call", callID, "service", r.Service, "target", r.Target)
		stream := kind.stream
		kind = bridgeKind(remote)
		kind.stream = stream
	}
	return kind, nil
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
	c.replay.Append(rest)

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
