package pbx

import (
	"time"

	"github.com/emiago/sipgo/sip"
)

// adopt2xx records the callee's To-tag and Contact from a 2xx. The caller
// holds c.mu.
func (c *call) adopt2xx(lg *leg, res *sip.Response) {
	if t, _ := res.To().Params.Get("tag"); t != "" {
		lg.remoteTag = t
	}
	if ch := res.Contact(); ch != nil {
		lg.target = ch.Address
	}
	lg.sdp = res.Body()
}

// reAck answers a retransmitted 2xx with the ACK already sent.
func (c *call) reAck(side int, res *sip.Response) {
	c.mu.Lock()
	lg := c.legs[side]
	if side == sideCallee && lg == nil {
		c.mu.Unlock()
		return
	}
	var ack *sip.Request
	if lg != nil && lg.lastAck != nil && lg.lastAck.CSeq().SeqNo == res.CSeq().SeqNo {
		ack = lg.lastAck
	}
	c.mu.Unlock()
	if ack != nil {
		_ = c.s.cli.WriteRequest(ack, noBuild)
	}
}

// answered bridges the call: ACK the callee, 200 to the caller, wait for
// the caller's ACK. It reports whether the call is up.
func (c *call) answered(lg *leg, res *sip.Response) bool {
	s := c.s
	c.mu.Lock()
	c.adopt2xx(lg, res)
	// Late offer (an INVITE without SDP): the callee's 200 carries the
	// offer and the caller's ACK the answer, so the callee's ACK waits for
	// the caller's (RFC 3261 §13.2.2.4, RFC 3264 §4).
	lateOffer := len(c.legs[sideCaller].sdp) == 0
	var ack *sip.Request
	if !lateOffer {
		ack = s.newInDialog(lg, sip.ACK, nil, "")
		lg.lastAck = ack
	}
	c.legs[sideCallee] = lg
	c.callee = lg.peer
	lg.st = calleeTimer(res, lg.policy)
	now := s.now()
	lg.st.last, c.legs[sideCaller].st.last = now, now
	if c.relay != nil {
		c.relay.setComedia(sideCallee, lg.nat.comedia)
		c.relay.setRemote(sideCallee, lg.sdp)
	}
	c.codec = sdpCodec(lg.sdp)
	c.mu.Unlock()
	if ack != nil {
		_ = s.cli.WriteRequest(ack, noBuild)
	}
	if c.ctx.Err() != nil { // the caller cancelled at the same moment
		if ack == nil {
			c.mu.Lock()
			ack = s.newInDialog(lg, sip.ACK, nil, "")
			lg.lastAck = ack
			c.mu.Unlock()
			_ = s.cli.WriteRequest(ack, noBuild)
		}
		c.hangup(sideCaller, "CANCEL", 487, "box")
		return true
	}
	if !c.changeState(stateUp, transition{}) {
		// ended meanwhile (the callee's BYE overtook its own 200): the
		// callee's leg is already BYEd, the caller still waits for an answer
		s.respond(c.inviteTx, c.inviteReq, 480, "Temporarily Unavailable", nil)
		return true
	}
	c.mu.Lock()
	sdp, a, seHdrs := lg.sdp, c.legs[sideCaller], c.seHdrs
	c.mu.Unlock()
	body := c.answerBody(sdp)
	c.mu.Lock()
	a.ourSDP = body
	c.mu.Unlock()
	s.wg.Add(1)
	go c.supervise()
	callerAck := c.sendFinal2xx(c.inviteTx, c.inviteReq, body, res, a, seHdrs...)
	if ack == nil { // late offer: the caller's answer goes to the callee in our ACK
		c.mu.Lock()
		var answer []byte
		if callerAck != nil && len(callerAck.Body()) > 0 {
			a.sdp = callerAck.Body()
			if c.relay != nil {
				c.relay.setRemote(sideCaller, a.sdp)
			}
			answer = c.transformOffer(sideCaller, a.sdp)
			lg.ourSDP = answer
		}
		ack = s.newInDialog(lg, sip.ACK, answer, "")
		lg.lastAck = ack
		c.mu.Unlock()
		_ = s.cli.WriteRequest(ack, noBuild)
	}
	if callerAck == nil {
		c.hangup(-1, "ANSWER", 200, "box")
	}
	return true
}

// sendFinal2xx sends a 2xx to a server INVITE transaction and retransmits
// it (T1 doubling to T2) until the ACK with the same CSeq arrives, for at
// most 64*T1 (RFC 3261 §13.3.1.4). It returns that ACK, nil if none came.
func (c *call) sendFinal2xx(tx sip.ServerTransaction, req *sip.Request, body []byte, from *sip.Response, l *leg, hdrs ...sip.Header) *sip.Request {
	s := c.s
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	res.AppendHeader(sip.NewHeader("Server", s.general().UserAgent))
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	c.mu.Lock()
	res.AppendHeader(s.contactFor(l.local.User, l.dest))
	c.mu.Unlock()
	if body != nil {
		ct := "application/sdp"
		if from != nil && from.ContentType() != nil {
			ct = from.ContentType().Value()
		}
		cth := sip.ContentTypeHeader(ct)
		res.AppendHeader(&cth)
	}
	for { // an ACK left over from an earlier 2xx must not count
		select {
		case <-l.ackWait:
			continue
		default:
		}
		break
	}
	s.routeResponse(req, res)
	if err := tx.Respond(res); err != nil {
		return nil
	}
	seq := req.CSeq().SeqNo
	interval := sip.T1
	deadline := time.NewTimer(64 * sip.T1)
	defer deadline.Stop()
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case ack := <-l.ackWait:
			if ack.CSeq().SeqNo == seq {
				return ack
			}
		case ack := <-tx.Acks():
			return ack
		case <-t.C:
			_ = tx.Respond(res)
			interval = min(interval*2, sip.T2)
			t.Reset(interval)
		case <-deadline.C:
			s.log.Warn("no ACK for 200 OK", "id", c.id)
			return nil
		case <-c.ctx.Done():
			return nil
		case <-s.runCtx.Done():
			return nil
		}
	}
}

// handleAck routes an ACK (for a 2xx: its own transaction) to the dialog.
func (s *Server) handleAck(req *sip.Request, _ sip.ServerTransaction) {
	tag, _ := req.To().Params.Get("tag")
	s.mu.Lock()
	ref := s.dialogs[dialogKey{req.CallID().Value(), tag}]
	s.mu.Unlock()
	if ref == nil {
		return
	}
	c := ref.call
	c.mu.Lock()
	l := c.legs[ref.side]
	c.mu.Unlock()
	if l == nil {
		return
	}
	select {
	case l.ackWait <- req:
	default:
	}
}
