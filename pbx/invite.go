package pbx

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// handleInvite takes a new call (an INVITE without To-tag); an INVITE
// inside a dialog is a re-INVITE.
func (s *Server) handleInvite(req *sip.Request, tx sip.ServerTransaction) {
	// The edge gave a new INVITE its To-tag before sipgo saw it (see
	// totag.go); a To-tag of another making is a re-INVITE's.
	switch tag, _ := req.To().Params.Get("tag"); {
	case tag == "":
		// One the edge could not tag, or a handler driven directly by a
		// test: tag it here, first thing, as the nearest second best.
		req.To().Params.Add("tag", newTag())
	case tag != callTag(req) || s.knownDialog(req.CallID().Value(), tag):
		s.handleInDialog(req, tx)
		return
	}
	src := sourceOf(req)
	// RFC 3261 §8.2.2 / §16.3: Max-Forwards 0 ends here; our own Via in
	// the request means it came back to us.
	maxFwd := 70
	if h := req.MaxForwards(); h != nil {
		maxFwd = int(h.Val())
	}
	if maxFwd <= 0 {
		s.respond(tx, req, 483, "Too Many Hops", nil)
		return
	}
	if s.isLoop(req) {
		s.respond(tx, req, 482, "Loop Detected", nil)
		return
	}
	s.mu.Lock()
	plan := s.plan
	closing := s.runCtx == nil || s.runCtx.Err() != nil
	s.mu.Unlock()
	if closing {
		s.respond(tx, req, 503, "Service Unavailable", nil)
		return
	}
	pc, ok := s.admit(req, src, true, s.txReply(tx, req))
	if !ok {
		return
	}
	name := pc.Name
	exten := req.Recipient.User
	if exten == "" {
		exten = "s"
	}
	switch plan.Lookup(pc.Context, exten) {
	case dialplan.NoMatch:
		s.log.Info("extension not found", "from", name, "exten", exten, "context", pc.Context)
		s.respond(tx, req, 404, "Not Found", nil)
		return
	case dialplan.Incomplete:
		s.respond(tx, req, 484, "Address Incomplete", nil)
		return
	default: // Found: dial
	}
	st, seHdrs, floor := callerTimer(req, policyOf(*pc))
	if floor > 0 { // RFC 4028 §8.1: a session interval below our Min-SE
		s.respond(tx, req, 422, "Session Interval Too Small", nil, sip.NewHeader("Min-SE", secs(floor)))
		return
	}
	c, code := s.newCall(req, tx, *pc, exten, src, maxFwd)
	if c == nil {
		s.respond(tx, req, code, "Temporarily Unavailable", nil)
		return
	}
	c.mu.Lock()
	c.legs[sideCaller].st, c.seHdrs = st, seHdrs
	c.mu.Unlock()
	// From here this handler is a call, which maxcalls bounds, not a
	// request in processing: it stays until the caller's ACK, and counted
	// in inflight it made the entry refuse new calls at ~1,000 calls/s
	// while the box was far from busy (bench-compare, 2026-12-06).
	s.inflight.Add(-1)
	defer s.inflight.Add(1) // guard subtracts it again
	defer s.wg.Done()
	c.run(plan)
}

// isLoop reports whether one of the request's Vias is ours: the request
// already went through this box once (RFC 3261 §16.3 step 4, as a B2BUA).
func (s *Server) isLoop(req *sip.Request) bool {
	for _, h := range req.GetHeaders("Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		a, err := netip.ParseAddr(strings.Trim(v.Host, "[]"))
		if err != nil || v.Port != int(s.addr.Port()) {
			continue
		}
		if a == s.localIP(a) || (s.addr.Addr().IsValid() && a == s.addr.Addr()) {
			if br, _ := v.Params.Get("branch"); strings.HasPrefix(br, "z9hG4bK") {
				return true
			}
		}
	}
	return false
}

// run executes the dial plan for the call. It returns when the caller got
// a final response (and, for 200, its ACK).
func (c *call) run(plan *dialplan.Plan) {
	s := c.s
	tx, req := c.inviteTx, c.inviteReq
	tx.OnCancel(func(*sip.Request) {
		// sipgo has already answered 200 to the CANCEL and 487 to the INVITE
		c.cancel(nil)
	})
	select {
	case <-tx.Done(): // CANCELled (or dead) before the hook was in place
		c.cancel(nil)
	default:
	}
	s.respond(tx, req, 100, "Trying", nil)
	s.publish(bus.CallStarted{CallID: c.id, SIPID: req.CallID().Value(), From: c.from, Exten: c.exten, Context: c.context})
	s.log.Info("call", "id", c.id, "from", c.from, "exten", c.exten, "context", c.context)

	r, _ := plan.Start(c.context, c.exten)
	if r == nil { // the plan changed under us (reload)
		c.fail(404, "Not Found", "CHANUNAVAIL")
		return
	}
	lastCause := 0
	for {
		if c.ctx.Err() != nil {
			c.abandoned()
			return
		}
		st, ok := r.Next()
		if !ok {
			break
		}
		switch st.App {
		case "Ringing":
			c.provisional(180, "Ringing", nil)
		case "Progress":
			c.provisional(183, "Session Progress", nil)
		case "Wait":
			select {
			case <-time.After(st.Duration):
			case <-c.ctx.Done():
			}
		case "Hangup":
			code, reason := cause2sip(st.Cause)
			c.fail(code, reason, dialStatusOr(r.DialStatus, "NOANSWER"))
			return
		case "Busy":
			c.fail(486, "Busy Here", "BUSY")
			return
		case "Congestion":
			c.fail(503, "Service Unavailable", "CONGESTION")
			return
		case "Modem":
			c.answerModem(st)
			return
		case "Dial":
			out := c.dial(st)
			r.SetDialStatus(out.status)
			if out.answered {
				return
			}
			if c.ctx.Err() != nil {
				c.abandoned()
				return
			}
			if out.cause != 0 {
				lastCause = out.cause
			}
		default: // NoOp, Answer (no media of our own to answer with), Set
			s.log.Debug("dial plan step", "id", c.id, "app", st.App, "args", st.Args)
		}
	}
	// Auto-fallthrough (main/pbx.c 4517-4528): BUSY -> busy, CONGESTION or
	// CHANUNAVAIL -> congestion; otherwise the hangup cause decides.
	switch r.DialStatus {
	case "BUSY":
		c.fail(486, "Busy Here", "BUSY")
	case "CONGESTION", "CHANUNAVAIL":
		c.fail(503, "Service Unavailable", r.DialStatus)
	default:
		code, reason := cause2sip(lastCause)
		c.fail(code, reason, dialStatusOr(r.DialStatus, "NOANSWER"))
	}
}

func dialStatusOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// provisional relays a 180/183 to the caller.
func (c *call) provisional(code int, reason string, body []byte) {
	c.s.respond(c.inviteTx, c.inviteReq, code, reason, body)
}

// fail answers the caller with a final error and ends the call.
func (c *call) fail(code int, reason, status string) {
	if c.ctx.Err() != nil {
		c.abandoned()
		return
	}
	c.s.respond(c.inviteTx, c.inviteReq, code, reason, nil)
	c.end(status, code, "box")
}

// abandoned ends a call the caller cancelled (sipgo sent the 487) or the
// box is stopping (503).
func (c *call) abandoned() {
	if errors.Is(context.Cause(c.ctx), errBoxStopping) || c.s.runCtx.Err() != nil {
		c.s.respond(c.inviteTx, c.inviteReq, 503, "Service Unavailable", nil)
		c.end("CANCEL", 503, "box")
		return
	}
	c.end("CANCEL", 487, "caller")
}
