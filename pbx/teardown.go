package pbx

import (
	"context"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

// hangup ends the call and sends BYE to every confirmed leg except from
// (from = -1: both, e.g. box shutdown). A second hangup does nothing.
func (c *call) hangup(from int, status string, code int, by string) {
	s := c.s
	if !c.changeState(stateEnded, transition{status: status, code: code, by: by}) {
		return
	}
	c.mu.Lock()
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
}

// end ends the call without any request of ours (the caller already got
// its final response, or cancelled).
func (c *call) end(status string, code int, by string) {
	c.changeState(stateEnded, transition{status: status, code: code, by: by})
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
		up := c.legs[sideCallee] != nil && (c.state == stateUp || c.state == stateReinvite)
		c.mu.Unlock()
		if up {
			c.hangup(-1, "ANSWER", 200, "box")
		} else {
			c.cancel(errBoxStopping)
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
		s.lineBusy[e.Peer] = e.State.Busy()
		if e.State.InCall() {
			delete(s.lineFree, e.Peer)
		} else if _, ok := s.lineFree[e.Peer]; !ok {
			s.lineFree[e.Peer] = s.now()
		}
		s.mu.Unlock()
	})
}
