package pbx

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type callState -linecomment -output callstate_string.go

import (
	"context"
	"errors"

	"github.com/isp-box/isp-box/internal/bus"
)

// callState is where a B2BUA call is. Every change goes through
// (*call).changeState, the one place that publishes CallRinging,
// CallAnswered and CallEnded and gives back the per-peer call counts.
//
//	          first 18x               200 from a callee
//	routing ────────────► ringing ─────────────────────► up ◄──────────┐
//	   │ │                   │                          │ │ re-INVITE   │ final
//	   │ └───────────────────┼── 200 without 18x ──────►┘ ▼ (either side)│ answer
//	   │                     │                        reinvite ─────────┘
//	   │ busy, no answer,    │ CANCEL, no answer,       │ │
//	   │ CANCEL, Hangup()    │ box stopping             │ │ BYE, no ACK, box stopping
//	   ▼                     ▼                          ▼ ▼
//	ended ◄─────────────────────────────────────────────────  (terminal)
//
// reinvite is up with an INVITE transaction pending on either dialog; a
// second INVITE then is glare and gets 491 (RFC 3261 §14.1-14.2). A BYE
// during a re-INVITE ends the call; the late answer to the re-INVITE then
// no longer moves it. A CANCEL after the caller got 200 never reaches the
// call: the INVITE server transaction ignores it (RFC 3261 §9.2).
type callState uint8

const (
	// The dial plan runs; no callee has answered.
	stateRouting callState = iota // routing
	// A callee sent 180/183.
	stateRinging // ringing
	// A callee answered; the call is bridged.
	stateUp // up
	// Up, with a re-INVITE pending on one of the dialogs.
	stateReinvite // reinvite
	// Over; removed from the server's tables.
	stateEnded // ended
)

// moves lists the states each state may change to.
var moves = [...][]callState{
	stateRouting:  {stateRinging, stateUp, stateEnded},
	stateRinging:  {stateRinging, stateUp, stateEnded},
	stateUp:       {stateReinvite, stateEnded},
	stateReinvite: {stateUp, stateEnded},
	stateEnded:    nil,
}

func (from callState) canMove(to callState) bool {
	for _, s := range moves[from] {
		if s == to {
			return true
		}
	}
	return false
}

// shown is the state as `isp-box calls` shows it: a re-INVITE does not
// take a call out of up, and an ended call is no longer listed.
func (st callState) shown() bus.CallStatus {
	switch st {
	case stateRouting:
		return bus.CallStatusRouting
	case stateRinging:
		return bus.CallStatusRinging
	case stateUp, stateReinvite, stateEnded:
	}
	return bus.CallStatusUp
}

// errBoxStopping is the cause of a call's context when the box shuts
// down, so that a ringing call answers the caller 503, not 487.
var errBoxStopping = errors.New("pbx: shutting down")

// transition is what entering a state reports.
type transition struct {
	callee string // ringing: the peer that rings
	status string // ended: Asterisk's DIALSTATUS
	code   int    // ended: the final SIP status the caller got (200 if answered)
	by     string // ended: caller, callee or box
}

// changeState moves the call to want if the diagram allows it and reports
// whether it did. Entering ringing (from routing) publishes CallRinging,
// entering up (from ringing or routing) CallAnswered; entering ended
// publishes CallEnded, cancels the call's context, closes the relay,
// drops the call's dialogs and gives back every call count it holds.
// The caller must not hold c.mu or s.mu.
func (c *call) changeState(want callState, t transition) bool {
	s := c.s
	c.mu.Lock()
	old := c.state
	if !old.canMove(want) {
		c.mu.Unlock()
		s.log.Debug("call state change refused", "id", c.id, "state", old, "want", want)
		return false
	}
	c.state = want
	var ev bus.Event
	switch want {
	case stateRinging:
		if old == stateRouting {
			ev = bus.CallRinging{CallID: c.id, Callee: t.callee}
		}
	case stateUp:
		if old != stateReinvite {
			c.answer = s.now()
			ev = bus.CallAnswered{CallID: c.id, Callee: c.callee, MediaMode: c.media, Codec: c.codec}
		}
	case stateEnded:
		ev = bus.CallEnded{
			CallID: c.id, SIPID: c.inviteReq.CallID().Value(), From: c.from, To: c.exten, Callee: c.callee,
			Start: c.start, Answer: c.answer, End: s.now(), Status: t.status, SIPCode: t.code, HangupBy: t.by,
			MediaMode: c.media, Codec: c.codec, Reason: c.reason,
		}
	default: // routing and re-INVITE publish no event
	}
	legs, rl, reason := c.legs, c.relay, c.reason
	c.mu.Unlock()
	if old != want {
		s.log.Debug("call state", "id", c.id, "was", old, "now", want)
	}

	switch want {
	case stateUp:
		if old != stateReinvite {
			s.log.Info("answered", "id", c.id, "callee", c.callee, "media", c.media, "codec", c.codec)
		}
	case stateEnded:
		c.cancel(context.Canceled)
		if rl != nil {
			rl.close()
		}
		s.mu.Lock()
		delete(s.calls, c.id)
		now := s.now()
		for _, l := range legs {
			if l != nil {
				k := dialogKey{l.callID, l.localTag}
				delete(s.dialogs, k)
				s.ended.add(k, now)
			}
		}
		for _, l := range c.held {
			c.releaseLocked(l)
		}
		c.held = nil
		s.mu.Unlock()
		if reason != "" {
			s.log.Info("call ended", "id", c.id, "status", t.status, "code", t.code, "by", t.by, "reason", reason)
		} else {
			s.log.Info("call ended", "id", c.id, "status", t.status, "code", t.code, "by", t.by)
		}
	default: // nothing to log or release
	}
	if ev != nil {
		s.publish(ev)
	}
	return true
}

// holdLocked counts leg l in its peer's calls (call-limit, `isp-box
// peers`) until releaseLocked or the end of the call. The caller holds s.mu.
func (c *call) holdLocked(p *peer, l *leg) {
	p.calls++
	l.held = true
	c.held = append(c.held, l)
}

// releaseLocked gives back l's count, once. The caller holds s.mu.
func (c *call) releaseLocked(l *leg) {
	if !l.held {
		return
	}
	l.held = false
	// a reload may have replaced the peer (its count restarts at 0)
	if p := c.s.peers[l.peer]; p != nil && p.calls > 0 {
		p.calls--
	}
}

// release is releaseLocked for a fork that lost or gave up.
func (c *call) release(l *leg) {
	c.s.mu.Lock()
	c.releaseLocked(l)
	c.s.mu.Unlock()
}
