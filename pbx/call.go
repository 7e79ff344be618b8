package pbx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// noBuild makes sipgo send a request exactly as we built it.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

// Sides of a call.
const (
	sideCaller = 0 // leg A: the caller's dialog; we are its UAS
	sideCallee = 1 // leg B: the callee's dialog; we are its UAC
)

// dialogKey identifies one of our dialogs: its Call-ID and OUR tag.
type dialogKey struct{ callID, localTag string }

type dialogRef struct {
	call *call
	side int
}

// leg is one dialog of a call, from our point of view.
type leg struct {
	side       int
	peer       string
	callID     string
	localTag   string
	remoteTag  string
	local      sip.Uri // our address in From (requests we send) / To (requests we get)
	remote     sip.Uri
	target     sip.Uri        // the remote Contact: Request-URI of our requests
	dest       netip.AddrPort // where our requests on this leg go
	cseq       uint32         // our last CSeq on this leg
	remoteCSeq uint32
	inviteSeq  uint32       // CSeq of our last INVITE on this leg (for its ACK)
	lastAck    *sip.Request // the ACK we sent for the last 2xx, re-sent on retransmissions
	sdp        []byte       // the last SDP this side sent us
	allow      []string     // the peer's codec policy (allow=)
	nat        natSetting
	busy       bool // an INVITE transaction from or to this side is pending (RFC 3261 §14.1 glare: 491)
	ackWait    chan *sip.Request
}

// call is one B2BUA call: two legs.
type call struct {
	s         *Server
	id        string
	from      string // calling peer
	exten     string
	context   string
	start     time.Time
	ctx       context.Context // ends when the call ends, the caller cancels or the box stops
	cancel    context.CancelFunc
	inviteReq *sip.Request // the caller's INVITE (tagged with our To-tag)
	inviteTx  sip.ServerTransaction
	callerCfg Peer
	maxFwd    int

	mu       sync.Mutex // guards the fields below and the legs' fields
	legs     [2]*leg
	state    string // routing, ringing, up, ending
	callee   string
	answer   time.Time
	media    string // direct or relay
	codec    string
	relay    *relay
	ended    bool
	ringing  bool
	stopping bool // the box is shutting down
}

func newTag() string { return sip.GenerateTagN(16) }

func newCallID(host netip.Addr) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "@" + host.String()
}

func (s *Server) hostPort(remote netip.Addr) (string, int) {
	return s.localIP(remote).String(), int(s.addr.Port())
}

// newVia is our Via for a request to dest (RFC 3261 §8.1.1.7, RFC 3581 rport).
func (s *Server) newVia(dest netip.AddrPort) *sip.ViaHeader {
	h, p := s.hostPort(dest.Addr())
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: h, Port: p, Params: sip.NewParams()}
	v.Params.Add("branch", sip.GenerateBranchN(16))
	v.Params.Add("rport", "")
	return v
}

func (s *Server) contactFor(user string, dest netip.AddrPort) *sip.ContactHeader {
	h, p := s.hostPort(dest.Addr())
	return &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: h, Port: p}}
}

// finishRequest adds what every request of ours carries and pins the
// source socket: requests leave from the listening port, so an ATA's NAT
// and "only from the proxy" rules hold (pbx.md §4, outbound source port).
func (s *Server) finishRequest(req *sip.Request, dest netip.AddrPort, body []byte, ctype string) {
	req.AppendHeader(sip.NewHeader("User-Agent", s.general().UserAgent))
	if body != nil {
		if ctype == "" {
			ctype = "application/sdp"
		}
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	req.SetTransport("UDP")
	req.SetDestination(dest.String())
	req.Laddr = s.laddr
}

// newOutOfDialog builds a request such as a qualify OPTIONS.
func (s *Server) newOutOfDialog(method sip.RequestMethod, uri string, dest netip.AddrPort, _ string) (*sip.Request, error) {
	var ru sip.Uri
	if err := sip.ParseUri(uri, &ru); err != nil {
		return nil, fmt.Errorf("pbx: contact %q: %w", uri, err)
	}
	req := sip.NewRequest(method, ru)
	req.AppendHeader(s.newVia(dest))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	h, _ := s.hostPort(dest.Addr())
	from := &sip.FromHeader{DisplayName: "asterisk", Address: sip.Uri{Scheme: "sip", User: "asterisk", Host: h}, Params: sip.NewParams()}
	from.Params.Add("tag", newTag())
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: ru.User, Host: ru.Host, Port: ru.Port}})
	cid := sip.CallIDHeader(newCallID(s.localIP(dest.Addr())))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 102, MethodName: method})
	req.AppendHeader(s.contactFor("asterisk", dest))
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	s.finishRequest(req, dest, nil, "")
	return req, nil
}

// newInDialog builds a request on leg l (RFC 3261 §12.2.1.1). It
// increments the leg's CSeq except for ACK. The caller holds c.mu.
func (s *Server) newInDialog(l *leg, method sip.RequestMethod, body []byte, ctype string) *sip.Request {
	req := sip.NewRequest(method, l.target)
	req.AppendHeader(s.newVia(l.dest))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	from := &sip.FromHeader{Address: l.local, Params: sip.NewParams()}
	from.Params.Add("tag", l.localTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: l.remote, Params: sip.NewParams()}
	if l.remoteTag != "" {
		to.Params.Add("tag", l.remoteTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(l.callID)
	req.AppendHeader(&cid)
	seq := l.inviteSeq
	if method != sip.ACK {
		l.cseq++
		seq = l.cseq
	}
	if method == sip.INVITE {
		l.inviteSeq = seq
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(s.contactFor(l.local.User, l.dest))
	}
	s.finishRequest(req, l.dest, body, ctype)
	return req
}

// handleInvite takes a new call (an INVITE without To-tag); an INVITE
// inside a dialog is a re-INVITE.
func (s *Server) handleInvite(req *sip.Request, tx sip.ServerTransaction) {
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
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
	name := req.From().Address.User
	s.mu.Lock()
	g := s.cfg.General
	plan := s.plan
	var pc *Peer
	knownAddr := false
	if p := s.peers[name]; p != nil && p.cfg.Type != "peer" {
		c := p.cfg
		pc = &c
		if dest, _, ok := s.peerDestLocked(p); ok && dest.Addr() == src.Addr() {
			knownAddr = true
		}
	}
	closing := s.runCtx == nil || s.runCtx.Err() != nil
	s.mu.Unlock()
	if closing {
		s.respond(tx, req, 503, "Service Unavailable", nil)
		return
	}
	if s.aclDenied(req, tx, name, src, g, pc) {
		return
	}
	// Nothing reaches the dial plan unauthenticated. insecure=invite and
	// an empty secret are honoured only from the peer's own address, since
	// chan_sip matched such peers by IP, never by the From header alone.
	skipAuth := pc != nil && knownAddr && (strings.Contains(pc.Insecure, "invite") || (pc.Secret == "" && pc.MD5Secret == ""))
	if pc != nil && !knownAddr && pc.Secret == "" && pc.MD5Secret == "" {
		pc = nil // no secret and not from its address: treat as unknown
	}
	if !skipAuth && s.authenticate(req, tx, name, pc, src) != authOK {
		return
	}
	exten := req.Recipient.User
	if exten == "" {
		exten = "s"
	}
	switch plan.Lookup(pc.Context, exten) {
	case dialplan.NoMatch:
		s.log.Info("pbx: extension not found", "from", name, "exten", exten, "context", pc.Context)
		s.respond(tx, req, 404, "Not Found", nil)
		return
	case dialplan.Incomplete:
		s.respond(tx, req, 484, "Address Incomplete", nil)
		return
	}
	c, code := s.newCall(req, tx, *pc, exten, src, maxFwd)
	if c == nil {
		s.respond(tx, req, code, "Temporarily Unavailable", nil)
		return
	}
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

// newCall registers the caller's leg. It returns nil and a status code
// when the call cannot be taken (call-limit: 480, C 26990-27005; closing).
func (s *Server) newCall(req *sip.Request, tx sip.ServerTransaction, pc Peer, exten string, src netip.AddrPort, maxFwd int) (*call, int) {
	tag := newTag()
	req.To().Params.Add("tag", tag) // every response to this INVITE, sipgo's 487 too, carries it
	a := &leg{
		side: sideCaller, peer: pc.Name, callID: req.CallID().Value(), localTag: tag,
		local: req.To().Address, remote: req.From().Address, remoteCSeq: req.CSeq().SeqNo,
		sdp: req.Body(), dest: src, cseq: 1, ackWait: make(chan *sip.Request, 1), allow: pc.Allow,
	}
	a.remoteTag, _ = req.From().Params.Get("tag")
	a.target = req.From().Address
	if ch := req.Contact(); ch != nil {
		a.target = ch.Address
		nat := parseNAT(pc.NAT)
		if !nat.forceRport && !(nat.autoForce && viaNAT(req, src)) {
			if ap, ok := contactAddr(ch.Address.String()); ok {
				a.dest = ap
			}
		}
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	c := &call{
		s: s, id: fmt.Sprintf("%08x", s.callSeq.Add(1)), from: pc.Name, exten: exten, context: pc.Context,
		start: s.now(), ctx: ctx, cancel: cancel, inviteReq: req, inviteTx: tx, callerCfg: pc,
		maxFwd: maxFwd, state: "routing", media: "direct",
	}
	c.legs[sideCaller] = a
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runCtx.Err() != nil {
		cancel()
		return nil, 503
	}
	p := s.peers[pc.Name]
	if p == nil {
		cancel()
		return nil, 480
	}
	if pc.CallLimit > 0 && p.calls >= pc.CallLimit {
		cancel()
		s.log.Info("pbx: call-limit reached", "peer", pc.Name, "limit", pc.CallLimit)
		return nil, 480
	}
	p.calls++
	s.calls[c.id] = c
	s.dialogs[dialogKey{a.callID, a.localTag}] = &dialogRef{c, sideCaller}
	s.wg.Add(1)
	return c, 0
}

// run executes the dial plan for the call. It returns when the caller got
// a final response (and, for 200, its ACK).
func (c *call) run(plan *dialplan.Plan) {
	s := c.s
	tx, req := c.inviteTx, c.inviteReq
	tx.OnCancel(func(*sip.Request) {
		// sipgo has already answered 200 to the CANCEL and 487 to the INVITE
		c.cancel()
	})
	select {
	case <-tx.Done(): // CANCELled (or dead) before the hook was in place
		c.cancel()
	default:
	}
	s.respond(tx, req, 100, "Trying", nil)
	s.publish(bus.CallStarted{CallID: c.id, SIPID: req.CallID().Value(), From: c.from, Exten: c.exten, Context: c.context})
	s.log.Info("pbx: call", "id", c.id, "from", c.from, "exten", c.exten, "context", c.context)

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
			s.log.Debug("pbx: dial plan step", "id", c.id, "app", st.App, "args", st.Args)
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
	c.mu.Lock()
	stopping := c.stopping
	c.mu.Unlock()
	if stopping {
		c.s.respond(c.inviteTx, c.inviteReq, 503, "Service Unavailable", nil)
		c.end("CANCEL", 503, "box")
		return
	}
	c.end("CANCEL", 487, "caller")
}

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
		if cause != 0 {
			s.log.Info("pbx: dial target unavailable", "id", c.id, "peer", n, "cause", cause)
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
			s.log.Info("pbx: nobody picked up", "id", c.id, "timeout", d.Timeout)
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
			p.calls++
		}
		s.mu.Unlock()
		pending++
		s.wg.Add(1)
		go c.runLeg(lg, req, stops[i], events)
	}
	var out ringOutcome
	relayed180, relayed183 := false, false
	released := map[*leg]bool{}
	release := func(lg *leg) {
		if !released[lg] {
			released[lg] = true
			c.releasePeer(lg.peer)
		}
	}
	for pending > 0 {
		select {
		case <-ctx.Done():
			for _, lg := range legs {
				release(lg)
			}
			return out
		case ev := <-events:
			switch {
			case ev.err != nil:
				pending--
				out.causes = append(out.causes, causeNoUserResponse)
				out.cause = causeNoUserResponse
				release(ev.lg)
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
				c.mu.Lock()
				first := !c.ringing
				c.ringing, c.state = true, "ringing"
				c.mu.Unlock()
				if first {
					s.publish(bus.CallRinging{CallID: c.id, Callee: ev.lg.peer})
				}
			case ev.res.IsSuccess():
				stopAll(ev.lg)
				for i := range legs {
					if legs[i] != ev.lg {
						release(legs[i])
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
				release(ev.lg)
			}
		}
	}
	return out
}

func (c *call) releasePeer(name string) {
	c.s.mu.Lock()
	if p := c.s.peers[name]; p != nil && p.calls > 0 {
		p.calls--
	}
	c.s.mu.Unlock()
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
		nat: parseNAT(cd.peer.NAT),
	}
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
	c.s.mu.Lock()
	c.s.dialogs[dialogKey{lg.callID, lg.localTag}] = &dialogRef{c, sideCallee}
	c.s.mu.Unlock()
	return lg, req
}

// runLeg runs one INVITE client transaction toward a callee. After stop is
// closed it no longer reports: it CANCELs (RFC 3261 §9.1: only once a
// provisional arrived), and a 2xx that still comes is ACKed and BYEd.
func (c *call) runLeg(lg *leg, req *sip.Request, stop <-chan struct{}, events chan<- legEvent) {
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
		deliver(legEvent{lg: lg, err: err})
		c.forgetLeg(lg)
		return
	}
	defer tx.Terminate()
	tx.OnRetransmission(func(res *sip.Response) {
		if res.IsSuccess() {
			c.reAck(sideCallee, res)
		}
	})
	gotProv, cancelled := false, false
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
			// non-2xx final: sipgo's transaction ACKs it
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

// forgetLeg drops a callee leg that will never be part of the call.
func (c *call) forgetLeg(lg *leg) {
	c.s.mu.Lock()
	delete(c.s.dialogs, dialogKey{lg.callID, lg.localTag})
	c.s.mu.Unlock()
}

// sendCancel CANCELs an INVITE we sent (RFC 3261 §9.1: same Request-URI,
// Call-ID, From, To, CSeq number and top Via).
func (s *Server) sendCancel(inv *sip.Request) {
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	req.AppendHeader(inv.Via().Clone())
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	dest, _ := netip.ParseAddrPort(inv.Destination())
	s.finishRequest(req, dest, nil, "")
	s.doRequest(req)
}

// doRequest sends a non-INVITE request now and waits for its final
// response in the background, so that the transaction retransmits as it
// should; when the box stops it stops waiting.
func (s *Server) doRequest(req *sip.Request) {
	tx, err := s.cli.TransactionRequest(context.Background(), req, noBuild)
	if err != nil {
		s.log.Debug("pbx: sending request", "method", req.Method, "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer tx.Terminate()
		t := time.NewTimer(64 * sip.T1)
		defer t.Stop()
		for {
			select {
			case res := <-tx.Responses():
				if !res.IsProvisional() {
					return
				}
			case <-tx.Done():
				return
			case <-t.C:
				return
			case <-s.runCtx.Done():
				return
			}
		}
	}()
}

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
	c.callee, c.state, c.answer = lg.peer, "up", s.now()
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
		c.hangup(sideCaller, "CANCEL", 487)
		return true
	}
	c.mu.Lock()
	sdp, media, codec, a := lg.sdp, c.media, c.codec, c.legs[sideCaller]
	c.mu.Unlock()
	body := c.answerBody(sdp)
	callerAck := c.sendFinal2xx(c.inviteTx, c.inviteReq, body, res, a)
	if ack == nil { // late offer: the caller's answer goes to the callee in our ACK
		c.mu.Lock()
		var answer []byte
		if callerAck != nil && len(callerAck.Body()) > 0 {
			a.sdp = callerAck.Body()
			if c.relay != nil {
				c.relay.setRemote(sideCaller, a.sdp)
			}
			answer = c.transformOffer(sideCaller, a.sdp)
		}
		ack = s.newInDialog(lg, sip.ACK, answer, "")
		lg.lastAck = ack
		c.mu.Unlock()
		_ = s.cli.WriteRequest(ack, noBuild)
	}
	s.publish(bus.CallAnswered{CallID: c.id, Callee: lg.peer, MediaMode: media, Codec: codec})
	s.log.Info("pbx: answered", "id", c.id, "callee", lg.peer, "media", media, "codec", codec)
	if callerAck == nil {
		c.hangup(-1, "ANSWER", 200)
	}
	return true
}

// sendFinal2xx sends a 2xx to a server INVITE transaction and retransmits
// it (T1 doubling to T2) until the ACK with the same CSeq arrives, for at
// most 64*T1 (RFC 3261 §13.3.1.4). It returns that ACK, nil if none came.
func (c *call) sendFinal2xx(tx sip.ServerTransaction, req *sip.Request, body []byte, from *sip.Response, l *leg) *sip.Request {
	s := c.s
	res := sip.NewResponseFromRequest(req, 200, "OK", body)
	res.AppendHeader(sip.NewHeader("Server", s.general().UserAgent))
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
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
			s.log.Warn("pbx: no ACK for 200 OK", "id", c.id)
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
	if other == nil {
		s.respond(tx, req, 491, "Request Pending", nil, sip.NewHeader("Retry-After", "2"))
		return
	}
	isInvite := req.Method == sip.INVITE
	c.mu.Lock()
	if isInvite && (l.busy || other.busy) {
		c.mu.Unlock()
		s.respond(tx, req, 491, "Request Pending", nil) // RFC 3261 §14.2
		return
	}
	if isInvite {
		l.busy, other.busy = true, true
	}
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
	}
	out := s.newInDialog(other, req.Method, body, ctype)
	c.mu.Unlock()
	if isInvite {
		defer func() {
			c.mu.Lock()
			l.busy, other.busy = false, false
			c.mu.Unlock()
		}()
	}
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
		c.mu.Unlock()
	}
	if !(isInvite && res.IsSuccess()) {
		var hdrs []sip.Header
		if rctype != "" {
			cth := sip.ContentTypeHeader(rctype)
			hdrs = append(hdrs, &cth)
		}
		s.respond(tx, req, res.StatusCode, res.Reason, rbody, hdrs...)
		return
	}
	// re-INVITE answered 2xx: ACK the other side once this side ACKs us,
	// carrying this side's ACK body (late offer: the answer rides in the ACK).
	var ackBody []byte
	if a := c.sendFinal2xx(tx, req, rbody, res, l); a != nil {
		ackBody = a.Body()
	}
	c.mu.Lock()
	c.adopt2xx(other, res)
	other.sdp = res.Body()
	if len(ackBody) > 0 {
		ackBody = c.transformOffer(from, ackBody)
	}
	ack := s.newInDialog(other, sip.ACK, ackBody, "")
	other.lastAck = ack
	c.mu.Unlock()
	_ = s.cli.WriteRequest(ack, noBuild)
}

func mustTag(h *sip.FromHeader) string {
	t, _ := h.Params.Get("tag")
	return t
}

// roundTrip sends a request and returns its final response. For INVITE
// the transaction is returned so that the caller terminates it after the
// ACK; sipgo ACKs non-2xx itself.
func (s *Server) roundTrip(req *sip.Request) (*sip.Response, sip.ClientTransaction, error) {
	ctx, cancel := context.WithTimeout(s.runCtx, 64*sip.T1)
	defer cancel()
	tx, err := s.cli.TransactionRequest(ctx, req, noBuild)
	if err != nil {
		return nil, nil, err
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, tx, nil
		case <-tx.Done():
			tx.Terminate()
			return nil, nil, fmt.Errorf("pbx: %s: %w", req.Method, tx.Err())
		case <-ctx.Done():
			tx.Terminate()
			return nil, nil, ctx.Err()
		}
	}
}

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

// CallInfo is a live call as `isp-box calls` shows it.
type CallInfo struct {
	ID        string
	From      string // calling peer
	Exten     string
	To        string // callee peer
	State     string // routing, ringing, up, ending
	Start     time.Time
	Answer    time.Time
	MediaMode string // direct or relay
	Codec     string
	CallerLeg string // Call-ID of the caller's dialog
	CalleeLeg string
	// RelayCaller and RelayCallee are the box's media addresses facing each
	// side when media is relayed; invalid with direct media.
	RelayCaller, RelayCallee netip.AddrPort
	Packets                  uint64 // relayed RTP packets, both directions
	Lost                     uint64
	JitterMS                 float64 // worst of the two directions
}

// Calls returns the live calls, oldest first.
func (s *Server) Calls() []CallInfo {
	s.mu.Lock()
	list := make([]*call, 0, len(s.calls))
	for _, c := range s.calls {
		list = append(list, c)
	}
	s.mu.Unlock()
	out := make([]CallInfo, 0, len(list))
	for _, c := range list {
		c.mu.Lock()
		ci := CallInfo{ID: c.id, From: c.from, Exten: c.exten, To: c.callee, State: c.state, Start: c.start,
			Answer: c.answer, MediaMode: c.media, Codec: c.codec, CallerLeg: c.legs[sideCaller].callID}
		if b := c.legs[sideCallee]; b != nil {
			ci.CalleeLeg = b.callID
		}
		rl := c.relay
		c.mu.Unlock()
		if rl != nil {
			ci.RelayCaller, ci.RelayCallee = rl.addr(sideCaller), rl.addr(sideCallee)
			for _, st := range rl.Stats() {
				ci.Packets += st.Packets
				ci.Lost += st.Lost
				ci.JitterMS = max(ci.JitterMS, st.JitterMS)
			}
		}
		out = append(out, ci)
	}
	sortCalls(out)
	return out
}

func sortCalls(out []CallInfo) {
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && (out[j].Start.Before(out[j-1].Start) || out[j].Start.Equal(out[j-1].Start) && out[j].ID < out[j-1].ID); j-- {
			out[j], out[j-1] = out[j-1], out[j]
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

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}
