package pbx

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// dialOutcome is what one Dial() did.
type dialOutcome struct {
	status   string // DIALSTATUS
	cause    int    // the callee's cause to copy to the caller, 0 = none
	answered bool
}

// candidate is one peer Dial may ring.
type candidate struct {
	peer   Peer
	dest   netip.AddrPort
	target string // Request-URI
}

// dial carries out Dial(): SIP targets ring in parallel; with HUNT targets
// the list is tried one at a time in order (app_dial semantics for the
// statuses: busy > congestion > nochan, D 917-936).
func (c *call) dial(st dialplan.Step) dialOutcome {
	s := c.s
	d := st.Dial
	ctx := c.ctx
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	hunt := false
	var names []string
	s.mu.Lock()
	for _, t := range d.Targets {
		if t.Tech == "HUNT" {
			hunt = true
			for _, p := range s.cfg.Peers { // config order
				if p.HuntGroup == t.Resource {
					names = append(names, p.Name)
				}
			}
			continue
		}
		names = append(names, t.Resource)
	}
	s.mu.Unlock()
	var busy, congestion, nochan int
	lastCause := 0
	note := func(cause int) {
		lastCause = cause
		switch cause {
		case causeBusy:
			busy++
		case causeCongestion:
			congestion++
		case causeNoAnswer, causeNormalClearing:
		default:
			nochan++
		}
	}
	var cands []candidate
	for _, n := range names {
		cd, cause := s.available(n, exOf(d, n))
		if cause != 0 && s.waitPoke(ctx, n) {
			cd, cause = s.available(n, exOf(d, n)) // the answer of the poke in flight decides
		}
		if cause != 0 {
			s.log.Info("dial target unavailable", "id", c.id, "peer", n, "cause", cause)
			note(cause)
			continue
		}
		if hunt {
			out := c.ring(ctx, []candidate{cd})
			if out.answered {
				return dialOutcome{status: "ANSWER", answered: true}
			}
			if c.ctx.Err() != nil {
				return dialOutcome{status: "CANCEL"}
			}
			if ctx.Err() != nil {
				return dialOutcome{status: "NOANSWER"}
			}
			note(out.cause)
			continue
		}
		cands = append(cands, cd)
	}
	if len(cands) > 0 {
		out := c.ring(ctx, cands)
		if out.answered {
			return dialOutcome{status: "ANSWER", answered: true}
		}
		if c.ctx.Err() != nil {
			return dialOutcome{status: "CANCEL"}
		}
		if ctx.Err() != nil {
			s.log.Info("nobody picked up", "id", c.id, "timeout", d.Timeout)
			return dialOutcome{status: "NOANSWER"}
		}
		for _, cause := range out.causes {
			note(cause)
		}
	}
	switch {
	case busy > 0:
		return dialOutcome{status: "BUSY", cause: causeBusy}
	case congestion > 0:
		return dialOutcome{status: "CONGESTION", cause: causeCongestion}
	case nochan > 0:
		return dialOutcome{status: "CHANUNAVAIL", cause: lastCause}
	}
	return dialOutcome{status: "NOANSWER", cause: lastCause}
}

func exOf(d *dialplan.DialArgs, peer string) string {
	for _, t := range d.Targets {
		if t.Tech == "SIP" && t.Resource == peer {
			return t.Exten
		}
	}
	return ""
}

// available says whether peer can be called now, and if not why (a Q.850
// cause): not registered, unreachable or lagged (20, C 6158), its modem
// line busy or down, or its call-limit reached (17).
func (s *Server) available(name, exten string) (candidate, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[name]
	if p == nil || p.cfg.Type == "user" {
		return candidate{}, causeUnregistered
	}
	dest, uri, ok := s.peerDestLocked(p)
	if !ok || !reachableLocked(p) {
		return candidate{}, causeUnregistered
	}
	if s.lineBusy[name] {
		return candidate{}, causeBusy
	}
	if p.cfg.CallLimit > 0 && p.calls >= p.cfg.CallLimit {
		return candidate{}, causeBusy
	}
	if exten != "" {
		var u sip.Uri
		if sip.ParseUri(uri, &u) == nil {
			u.User = exten
			uri = u.String()
		}
	}
	return candidate{peer: p.cfg, dest: dest, target: uri}, 0
}

// ringOutcome is what ringing a set of candidates gave.
type ringOutcome struct {
	answered bool
	causes   []int
	cause    int
}

type legEvent struct {
	lg  *leg
	res *sip.Response
	err error
}

// ring sends an INVITE to every candidate at once and waits for the first
// answer; the others are cancelled. It returns when one answered, all
// failed, or ctx ended (then the pending legs cancel themselves).
func (c *call) ring(ctx context.Context, cands []candidate) ringOutcome {
	s := c.s
	events := make(chan legEvent) // unbuffered: an event is either taken or the leg keeps it
	stops := make([]chan struct{}, len(cands))
	legs := make([]*leg, len(cands))
	stopAll := func(except *leg) {
		for i, st := range stops {
			if st != nil && legs[i] != except {
				close(st)
				stops[i] = nil
			}
		}
	}
	defer stopAll(nil)
	offer, ctype, err := c.offerFor(cands)
	if err != nil {
		return ringOutcome{causes: []int{58}, cause: 58}
	}
	pending := 0
	for i, cd := range cands {
		lg, req := c.newCalleeLeg(cd, offer, ctype)
		legs[i] = lg
		stops[i] = make(chan struct{})
		s.mu.Lock()
		if p := s.peers[cd.peer.Name]; p != nil {
			c.holdLocked(p, lg)
		}
		s.mu.Unlock()
		pending++
		s.wg.Add(1)
		go c.runLeg(lg, req, stops[i], events, cd.peer)
	}
	var out ringOutcome
	relayed180, relayed183 := false, false
	for pending > 0 {
		select {
		case <-ctx.Done():
			for _, lg := range legs {
				c.release(lg)
			}
			return out
		case ev := <-events:
			switch {
			case ev.err != nil:
				pending--
				out.causes = append(out.causes, causeNoUserResponse)
				out.cause = causeNoUserResponse
				c.release(ev.lg)
			case ev.res.IsProvisional():
				code := ev.res.StatusCode
				body := c.answerBody(ev.res.Body())
				if code == 180 && !relayed180 || code == 183 && len(body) > 0 && !relayed183 {
					if code == 180 {
						relayed180 = true
					} else {
						relayed183 = true
					}
					c.provisional(code, ev.res.Reason, body)
				}
				c.changeState(stateRinging, transition{callee: ev.lg.peer})
			case ev.res.IsSuccess():
				stopAll(ev.lg)
				for i := range legs {
					if legs[i] != ev.lg {
						c.release(legs[i])
					}
				}
				if c.answered(ev.lg, ev.res) {
					out.answered = true
				}
				return out
			default:
				pending--
				cause := sip2cause(ev.res.StatusCode)
				out.causes = append(out.causes, cause)
				out.cause = cause
				c.release(ev.lg)
			}
		}
	}
	return out
}

// newCalleeLeg builds leg B and its INVITE.
func (c *call) newCalleeLeg(cd candidate, offer []byte, ctype string) (*leg, *sip.Request) {
	s := c.s
	var ru sip.Uri
	_ = sip.ParseUri(cd.target, &ru)
	h, _ := s.hostPort(cd.dest.Addr())
	lg := &leg{
		side: sideCallee, peer: cd.peer.Name, callID: newCallID(s.localIP(cd.dest.Addr())), localTag: newTag(),
		local:  sip.Uri{Scheme: "sip", User: c.inviteReq.From().Address.User, Host: h},
		remote: sip.Uri{Scheme: "sip", User: ru.User, Host: ru.Host, Port: ru.Port},
		target: ru, dest: cd.dest, cseq: 101, ackWait: make(chan *sip.Request, 1), allow: cd.peer.Allow,
		nat: parseNAT(cd.peer.NAT), policy: policyOf(cd.peer), ourSDP: offer,
		rtpTimeout: [2]time.Duration{cd.peer.RTPTimeout, cd.peer.RTPHoldTimeout},
	}
	trunkFrom(lg, cd.peer)
	c.mu.Lock()
	req := s.newInDialog(lg, sip.INVITE, offer, ctype)
	c.mu.Unlock()
	// Max-Forwards: the caller's minus one, capped by the callee's maxforwards=
	mf := sip.MaxForwardsHeader(uint32(min(c.maxFwd-1, cd.peer.MaxForwards)))
	req.ReplaceHeader(&mf)
	if fh := c.inviteReq.From(); fh != nil {
		req.From().DisplayName = fh.DisplayName
	}
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	if tp := lg.policy; tp.mode == timersOriginate { // ask for a session timer (RFC 4028 §7.1)
		req.AppendHeader(sip.NewHeader("Supported", "timer"))
		req.AppendHeader(sip.NewHeader("Session-Expires", secs(tp.expires)))
		req.AppendHeader(sip.NewHeader("Min-SE", secs(max(tp.minSE, rfcMinSE))))
	}
	c.s.mu.Lock()
	c.s.dialogs[dialogKey{lg.callID, lg.localTag}] = &dialogRef{c, sideCallee}
	c.s.mu.Unlock()
	return lg, req
}

// runLeg runs one INVITE client transaction toward a callee. After stop is
// closed it no longer reports: it CANCELs (RFC 3261 §9.1: only once a
// provisional arrived), and a 2xx that still comes is ACKed and BYEd.
func (c *call) runLeg(lg *leg, req *sip.Request, stop <-chan struct{}, events chan<- legEvent, peer Peer) {
	s := c.s
	defer s.wg.Done()
	deliver := func(ev legEvent) bool {
		if stop == nil {
			return false
		}
		select {
		case events <- ev:
			return true
		case <-stop:
			stop = nil
			return false
		}
	}
	tx, err := s.cli.TransactionRequest(s.runCtx, req, noBuild)
	if err != nil {
		// whatever refuses to send a call must say so (it was a silent 503)
		s.log.Warn("INVITE not sent", "call", c.id, "peer", lg.peer, "err", err)
		deliver(legEvent{lg: lg, err: err})
		c.forgetLeg(lg)
		return
	}
	defer func() { tx.Terminate() }()
	reAck := func(res *sip.Response) {
		if res.IsSuccess() {
			c.reAck(sideCallee, res)
		}
	}
	tx.OnRetransmission(reAck)
	retried := false
	gotProv, cancelled, authed := false, false, false
	cancelIt := func() {
		cancelled = true
		if gotProv {
			s.sendCancel(req)
		}
	}
	for {
		select {
		case <-stop:
			stop = nil
			if !cancelled {
				cancelIt()
			}
		case res := <-tx.Responses():
			if res.IsProvisional() {
				first := !gotProv
				gotProv = true
				if cancelled {
					if first {
						s.sendCancel(req)
					}
					continue
				}
				if res.StatusCode == 100 {
					continue
				}
				c.mu.Lock()
				if t, _ := res.To().Params.Get("tag"); t != "" {
					lg.remoteTag = t
				}
				c.mu.Unlock()
				if !deliver(legEvent{lg: lg, res: res}) && !cancelled {
					cancelIt()
				}
				continue
			}
			if res.IsSuccess() {
				if cancelled || !deliver(legEvent{lg: lg, res: res}) {
					// answered after we gave up on it: ACK then BYE (RFC 3261 §15)
					c.mu.Lock()
					c.adopt2xx(lg, res)
					ack := s.newInDialog(lg, sip.ACK, nil, "")
					bye := s.newInDialog(lg, sip.BYE, nil, "")
					c.mu.Unlock()
					_ = s.cli.WriteRequest(ack, noBuild)
					s.doRequest(bye)
					c.forgetLeg(lg)
				}
				return
			}
			// A provider challenges our INVITE: answer once (trunk_call.go).
			if (res.StatusCode == 401 || res.StatusCode == 407) && !cancelled && !authed {
				if nreq := c.authRetry(lg, req, res, peer); nreq != nil {
					if ntx, err := s.cli.TransactionRequest(s.runCtx, nreq, noBuild); err == nil {
						authed, gotProv = true, false
						tx.Terminate()
						tx, req = ntx, nreq
						tx.OnRetransmission(reAck)
						continue
					}
				}
			}
			// non-2xx final: sipgo's transaction ACKs it
			if mse := minSEOf(res); res.StatusCode == 422 && mse > 0 && !retried && !cancelled {
				// RFC 4028 §7.4: try once more with the callee's Min-SE
				retried = true
				req = c.retryWithMinSE(lg, req, mse)
				tx.Terminate()
				ntx, err := s.cli.TransactionRequest(s.runCtx, req, noBuild)
				if err != nil {
					deliver(legEvent{lg: lg, err: err})
					c.forgetLeg(lg)
					return
				}
				tx, gotProv = ntx, false
				tx.OnRetransmission(reAck)
				continue
			}
			if !cancelled {
				deliver(legEvent{lg: lg, res: res})
			}
			c.forgetLeg(lg)
			return
		case <-tx.Done():
			if !cancelled {
				deliver(legEvent{lg: lg, err: fmt.Errorf("pbx: INVITE to %s: %w", lg.peer, tx.Err())})
			}
			c.forgetLeg(lg)
			return
		case <-s.runCtx.Done():
			if !cancelled {
				cancelIt()
			}
			c.forgetLeg(lg)
			return
		}
	}
}

// retryWithMinSE is req again after a 422 (RFC 4028 §7.4): a new CSeq
// and branch, Session-Expires and Min-SE raised to the callee's Min-SE.
func (c *call) retryWithMinSE(lg *leg, req *sip.Request, mse time.Duration) *sip.Request {
	r := req.Clone()
	c.mu.Lock()
	lg.cseq++
	lg.inviteSeq = lg.cseq
	seq := lg.cseq
	c.mu.Unlock()
	r.CSeq().SeqNo = seq
	v := c.s.newVia(lg.dest)
	r.RemoveHeader("Via")
	r.PrependHeader(v)
	se, _, _ := sessionExpires(req)
	r.RemoveHeader("Session-Expires")
	r.RemoveHeader("Min-SE")
	r.AppendHeader(sip.NewHeader("Session-Expires", secs(max(se, mse))))
	r.AppendHeader(sip.NewHeader("Min-SE", secs(mse)))
	r.SetDestination(req.Destination())
	r.Laddr = req.Laddr
	return r
}

// forgetLeg drops a callee leg that will never be part of the call.
func (c *call) forgetLeg(lg *leg) {
	c.s.mu.Lock()
	delete(c.s.dialogs, dialogKey{lg.callID, lg.localTag})
	c.s.mu.Unlock()
}
