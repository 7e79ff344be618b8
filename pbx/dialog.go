package pbx

import (
	"github.com/emiago/sipgo/sip"
)

// handleCancel answers a CANCEL that matched no pending INVITE (RFC 3261
// §9.2: 481); sipgo handles the ones that match.
func (s *Server) handleCancel(req *sip.Request, tx sip.ServerTransaction) {
	s.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
}

// handleInDialog relays a request inside a dialog (BYE, re-INVITE,
// UPDATE, INFO, OPTIONS) to the other leg and its answer back.
func (s *Server) handleInDialog(req *sip.Request, tx sip.ServerTransaction) {
	tag, _ := req.To().Params.Get("tag")
	s.mu.Lock()
	ref := s.dialogs[dialogKey{req.CallID().Value(), tag}]
	s.mu.Unlock()
	if ref == nil {
		s.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	c, from := ref.call, ref.side
	c.mu.Lock()
	l := c.legs[from]
	if l == nil || l.remoteTag != mustTag(req.From()) {
		c.mu.Unlock()
		s.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	// RFC 3261 §12.2.2: a lower CSeq than the last one is out of order.
	if seq := req.CSeq().SeqNo; seq <= l.remoteCSeq {
		c.mu.Unlock()
		s.respond(tx, req, 500, "Server Internal Error", nil, sip.NewHeader("Retry-After", "1"))
		return
	}
	l.remoteCSeq = req.CSeq().SeqNo
	if ch := req.Contact(); ch != nil && req.Method == sip.INVITE {
		l.target = ch.Address // target refresh (RFC 3261 §12.2.2)
	}
	// Any request proves a probed peer alive; a re-INVITE or UPDATE
	// refreshes a session timer (RFC 4028 §9), and our 2xx restates it.
	var seResp []sip.Header
	if isRefresh := req.Method == sip.INVITE || req.Method == sip.UPDATE; isRefresh || !l.st.negotiated {
		l.st.last = s.now()
		if isRefresh && l.st.negotiated {
			if se, ref, ok := sessionExpires(req); ok {
				l.st.interval = se
				if ref == "uac" || ref == "uas" {
					l.st.boxRefresh = ref == "uas" // uac: the peer, which sent this request
				}
			}
			ref := "uas"
			if !l.st.boxRefresh {
				ref = "uac"
			}
			seResp = seHeaders(l.st.interval, ref, l.st.supported)
		}
	}
	other := c.legs[1-from]
	c.mu.Unlock()

	if req.Method == sip.BYE {
		s.respond(tx, req, 200, "OK", nil)
		by := "caller"
		if from == sideCallee {
			by = "callee"
		}
		c.hangup(from, "ANSWER", 200, by)
		return
	}
	c.mu.Lock()
	md := c.modem
	c.mu.Unlock()
	if md != nil && from == sideCaller {
		c.modemInDialog(md, l, req, tx, seResp)
		return
	}
	if other == nil {
		s.respond(tx, req, 491, "Request Pending", nil, sip.NewHeader("Retry-After", "2"))
		return
	}
	isInvite := req.Method == sip.INVITE
	settled := false // the re-INVITE is over and the call back to up
	if (isInvite || req.Method == sip.UPDATE) && offersT38(req.Body()) && c.involvesModem() {
		// keep the data call on G.711: refuse the switch to fax (RFC 3261
		// §21.4.26; RFC 3264 §6 lets the offerer keep the old session)
		s.log.Info("T.38 refused on a modem call", "id", c.id, "from", l.peer)
		s.respond(tx, req, 488, "Not Acceptable Here", nil, sip.NewHeader("Warning", `304 isp-box "Media type not available"`))
		return
	}
	if isInvite {
		// one INVITE transaction at a time over both dialogs: the second
		// is glare (RFC 3261 §14.2)
		if !c.changeState(stateReinvite, transition{}) {
			s.respond(tx, req, 491, "Request Pending", nil)
			return
		}
		// back to up when this one is over, unless a BYE ended the call
		defer func() {
			if !settled {
				c.changeState(stateUp, transition{})
			}
		}()
	}
	c.mu.Lock()
	body := req.Body()
	ctype := ""
	if h := req.ContentType(); h != nil {
		ctype = h.Value()
	}
	if isSDP(ctype, body) {
		l.sdp = body
		if c.relay != nil {
			c.relay.setRemote(from, body)
		}
		body = c.transformOffer(from, body)
		other.ourSDP = body
	}
	out := s.newInDialog(other, req.Method, body, ctype)
	c.mu.Unlock()
	res, otx, err := s.roundTrip(out)
	if err != nil {
		s.respond(tx, req, 408, "Request Timeout", nil)
		return
	}
	if otx != nil {
		defer otx.Terminate()
	}
	rbody := res.Body()
	rctype := ""
	if h := res.ContentType(); h != nil {
		rctype = h.Value()
	}
	if isSDP(rctype, rbody) {
		c.mu.Lock()
		other.sdp = rbody
		if c.relay != nil {
			c.relay.setRemote(1-from, rbody)
		}
		rbody = c.transformAnswer(1-from, rbody)
		if isInvite {
			c.codec = sdpCodec(other.sdp)
		}
		if res.IsSuccess() {
			l.ourSDP = rbody
		}
		c.mu.Unlock()
	}
	if !(isInvite && res.IsSuccess()) {
		var hdrs []sip.Header
		if rctype != "" {
			cth := sip.ContentTypeHeader(rctype)
			hdrs = append(hdrs, &cth)
		}
		if res.IsSuccess() {
			hdrs = append(hdrs, seResp...)
		}
		s.respond(tx, req, res.StatusCode, res.Reason, rbody, hdrs...)
		return
	}
	// re-INVITE answered 2xx: ACK the other side once this side ACKs us,
	// carrying this side's ACK body (late offer: the answer rides in the ACK).
	var ackBody []byte
	if a := c.sendFinal2xx(tx, req, rbody, res, l, seResp...); a != nil {
		ackBody = a.Body()
	}
	c.mu.Lock()
	c.adopt2xx(other, res)
	other.sdp = res.Body()
	if len(ackBody) > 0 {
		ackBody = c.transformOffer(from, ackBody)
		other.ourSDP = ackBody
	}
	ack := s.newInDialog(other, sip.ACK, ackBody, "")
	other.lastAck = ack
	c.mu.Unlock()
	// up again before the ACK leaves: the other side may send its own
	// re-INVITE as soon as it has the ACK
	c.changeState(stateUp, transition{})
	settled = true
	_ = s.cli.WriteRequest(ack, noBuild)
}

func mustTag(h *sip.FromHeader) string {
	t, _ := h.Params.Get("tag")
	return t
}
