package pbx

import (
	"context"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

// hangup ends an answered call: BYE to every leg except from (from = -1:
// both, e.g. box shutdown).
func (c *call) hangup(from int, status string, code int, by ...string) {
	s := c.s
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.state = "ending"
	var byes []*sip.Request
	for side, l := range c.legs {
		if l == nil || side == from || l.remoteTag == "" {
			continue
		}
		byes = append(byes, s.newInDialog(l, sip.BYE, nil, ""))
	}
	c.mu.Unlock()
	for _, b := range byes {
		s.doRequest(b)
	}
	who := "box"
	if len(by) > 0 {
		who = by[0]
	}
	c.end(status, code, who)
}

// end records the end of the call once: CallEnded, counters, dialogs.
func (c *call) end(status string, code int, by string) {
	s := c.s
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.state = "ending"
	legs := c.legs
	rl := c.relay
	ev := bus.CallEnded{
		CallID: c.id, SIPID: c.inviteReq.CallID().Value(), From: c.from, To: c.exten, Callee: c.callee,
		Start: c.start, Answer: c.answer, End: s.now(), Status: status, SIPCode: code, HangupBy: by,
		MediaMode: c.media, Codec: c.codec,
	}
	c.mu.Unlock()
	c.cancel()
	if rl != nil {
		rl.close()
	}
	s.mu.Lock()
	delete(s.calls, c.id)
	for _, l := range legs {
		if l != nil {
			delete(s.dialogs, dialogKey{l.callID, l.localTag})
		}
	}
	if p := s.peers[c.from]; p != nil && p.calls > 0 {
		p.calls--
	}
	if legs[sideCallee] != nil {
		if p := s.peers[legs[sideCallee].peer]; p != nil && p.calls > 0 {
			p.calls--
		}
	}
	s.mu.Unlock()
	s.log.Info("pbx: call ended", "id", c.id, "status", status, "code", code, "by", by)
	s.publish(ev)
}

// shutdownCalls ends every call: answered ones with BYE on both legs,
// ringing ones with 503 to the caller and CANCEL to the callees.
func (s *Server) shutdownCalls() {
	s.mu.Lock()
	list := make([]*call, 0, len(s.calls))
	for _, c := range s.calls {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		c.mu.Lock()
		up := c.legs[sideCallee] != nil && c.state == "up"
		c.stopping = true
		c.mu.Unlock()
		if up {
			c.hangup(-1, "ANSWER", 200, "box")
		} else {
			c.cancel()
		}
	}
}

// watchLines follows modem line states: a peer whose line is busy or down
// gets no INVITE (486 or the next hunt member instead).
func (s *Server) watchLines(ctx context.Context) {
	if s.bus == nil {
		<-ctx.Done()
		return
	}
	// Reliable: a lost "idle" would keep a line busy (486) for good, and
	// hundreds of lines change state at once when a modem bank starts.
	bus.OnReliable(ctx, s.bus, "pbx.lines", func(e bus.LineState) {
		if e.Peer == "" {
			return
		}
		s.mu.Lock()
		s.lineBusy[e.Peer] = e.Busy()
		s.mu.Unlock()
	})
}
