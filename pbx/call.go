package pbx

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/status"
)

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
	ackWait    chan *sip.Request
	held       bool             // counted in its peer's calls; guarded by Server.mu
	policy     timerPolicy      // the peer's session timer settings
	rtpTimeout [2]time.Duration // the peer's rtptimeout, rtpholdtimeout
	st         sessionTimer     // supervision of this dialog
	ourSDP     []byte           // the last SDP we sent on this leg, for a refreshing re-INVITE
}

// call is one B2BUA call: two legs.
type call struct {
	s         *Server
	id        string
	from      string // calling peer
	exten     string
	context   string
	start     time.Time
	ctx       context.Context // ends when the call ends, the caller cancels or the box stops (cause errBoxStopping)
	cancel    context.CancelCauseFunc
	inviteReq *sip.Request // the caller's INVITE (tagged with our To-tag)
	inviteTx  sip.ServerTransaction
	callerCfg Peer
	maxFwd    int

	held []*leg // legs counted in their peers' calls; guarded by s.mu

	mu     sync.Mutex // guards the fields below and the legs' fields
	legs   [2]*leg
	state  callState // changed only by changeState
	callee string
	answer time.Time
	media  string // direct or relay
	codec  string
	relay  *relay
	reason string       // why the box ends the call on its own, for CallEnded
	seHdrs []sip.Header // Session-Expires/Require for our 2xx to the caller
	modem  *modemMedia  // the box's own modem answered (Modem(answer)): no other leg
}

// newCall registers the caller's leg. It returns nil and a status code
// when the call cannot be taken (call-limit: 480, C 26990-27005; closing).
func (s *Server) newCall(req *sip.Request, tx sip.ServerTransaction, pc Peer, exten string, src netip.AddrPort, maxFwd int) (*call, int) {
	tag, _ := req.To().Params.Get("tag") // handleInvite put it there
	a := &leg{
		side: sideCaller, peer: pc.Name, callID: req.CallID().Value(), localTag: tag,
		local: req.To().Address, remote: req.From().Address, remoteCSeq: req.CSeq().SeqNo,
		sdp: req.Body(), dest: src, cseq: 1, ackWait: make(chan *sip.Request, 1), allow: pc.Allow,
		policy: policyOf(pc), rtpTimeout: [2]time.Duration{pc.RTPTimeout, pc.RTPHoldTimeout},
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
	ctx, cancel := context.WithCancelCause(s.runCtx)
	c := &call{
		s: s, id: fmt.Sprintf("%08x", s.callSeq.Add(1)), from: pc.Name, exten: exten, context: pc.Context,
		start: s.now(), ctx: ctx, cancel: cancel, inviteReq: req, inviteTx: tx, callerCfg: pc,
		maxFwd: maxFwd, state: stateRouting, media: "direct",
	}
	c.legs[sideCaller] = a
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runCtx.Err() != nil {
		cancel(nil)
		return nil, 503
	}
	p := s.peers[pc.Name]
	if p == nil {
		cancel(nil)
		return nil, 480
	}
	if pc.CallLimit > 0 && p.calls >= pc.CallLimit {
		cancel(nil)
		s.log.Info("call-limit reached", "peer", pc.Name, "limit", pc.CallLimit)
		return nil, 480
	}
	c.holdLocked(p, a)
	s.calls[c.id] = c
	s.dialogs[dialogKey{a.callID, a.localTag}] = &dialogRef{c, sideCaller}
	s.wg.Add(1)
	return c, 0
}

// CallInfo is a live call as `isp-box calls` shows it (internal/status's).
type CallInfo = status.Call

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
		ci := CallInfo{ID: c.id, From: c.from, Exten: c.exten, To: c.callee, State: c.state.shown(), Start: c.start,
			Answer: c.answer, MediaMode: c.media, Codec: c.codec, CallerLeg: c.legs[sideCaller].callID}
		if b := c.legs[sideCallee]; b != nil {
			ci.CalleeLeg = b.callID
		}
		rl, md := c.relay, c.modem
		c.mu.Unlock()
		if md != nil {
			ms := md.snapshot(ci.ID, false)
			ci.Modem = &ms
		}
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
