package ata

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/isp-box/isp-box/internal/sim/phone"
)

// Incoming calls: INVITE → 180 → the modem rings → 200 + SDP answer → ACK;
// and re-INVITEs inside a call.

// incoming is a call ringing at the modem (phone.Call).
type incoming struct {
	callerID   string
	answer     chan chan answerResult
	reject     chan struct{}
	rejectOnce sync.Once
	gone       chan struct{}
}

type answerResult struct {
	k   phone.Carrier
	err error
}

var _ phone.Call = (*incoming)(nil)

func (in *incoming) CallerID() string      { return in.callerID }
func (in *incoming) Gone() <-chan struct{} { return in.gone }
func (in *incoming) Reject()               { in.rejectOnce.Do(func() { close(in.reject) }) }

// Answer sends 200 OK with the SDP answer and returns the carrier once the
// caller's ACK arrived.
func (in *incoming) Answer(ctx context.Context) (phone.Carrier, error) {
	reply := make(chan answerResult, 1)
	select {
	case in.answer <- reply:
	case <-in.gone:
		return nil, fmt.Errorf("%w: caller hung up", phone.ErrNoCarrier)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.k, r.err
	case <-ctx.Done():
		go func() { // the 200 is on its way: hang up what it brings
			if r := <-reply; r.k != nil {
				r.k.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func (l *Line) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		l.onReInvite(req, tx)
		return
	}
	offer, err := parseSDP(req.Body())
	var f format
	if err == nil {
		f, err = offer.choose()
	}
	if err != nil {
		// RFC 3264 §6: no acceptable media → 488.
		l.log.Info("incoming call refused", "err", err)
		l.respond(req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	callerID := ""
	if from := req.From(); from != nil {
		callerID = from.Address.User
	}
	c := &call{id: req.CallID().Value(), peer: callerID, payload: f, remote: offer.rtpAddr(), state: Ringing,
		remoteCSeq: req.CSeq().SeqNo, remoteSeen: true}
	l.mu.Lock()
	if l.cur != nil || !l.running.Load() {
		l.mu.Unlock()
		l.log.Info("incoming call while busy", "from", callerID)
		l.respond(req, tx, sip.StatusBusyHere, "Busy Here")
		return
	}
	l.cur = c
	ringer := l.ringer
	l.mu.Unlock()
	answered := false
	defer func() {
		if !answered {
			l.endCall(c, false)
		}
	}()

	ds, err := l.dua.ReadInvite(req, tx)
	if err != nil {
		l.log.Info("bad INVITE", "err", err)
		l.respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	l.mu.Lock()
	c.uas = ds
	l.mu.Unlock()
	l.a.notify(l)
	l.log.Info("ringing", "from", callerID, "call", c.id, "payload", f.Encoding)
	if err := ds.Respond(sip.StatusRinging, "Ringing", nil, sip.NewHeader("Server", l.a.opts.UserAgent)); err != nil {
		l.log.Info("180 failed", "err", err)
		return
	}
	in := &incoming{callerID: callerID, answer: make(chan chan answerResult), reject: make(chan struct{}), gone: make(chan struct{})}
	defer func() {
		if !answered {
			close(in.gone)
		}
	}()
	if ringer != nil {
		ringer.Incoming(in)
	}
	select {
	case reply := <-in.answer:
		k, err := l.answer(c, ds, f)
		if err != nil {
			reply <- answerResult{err: fmt.Errorf("%w: %w", phone.ErrNoCarrier, err)}
			return
		}
		answered = true
		reply <- answerResult{k: k}
	case <-in.reject:
		l.log.Info("modem rejected the call", "call", c.id)
		l.endCall(c, false) // the port is free now, not after the ACK
		_ = ds.Respond(sip.StatusBusyHere, "Busy Here", nil, sip.NewHeader("Server", l.a.opts.UserAgent))
	case <-ds.Context().Done():
		// CANCEL: the transaction layer already sent 200 and 487.
		l.log.Info("caller gave up", "call", c.id)
	case <-l.life.Done():
		l.endCall(c, false)
		_ = ds.Respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil, sip.NewHeader("Server", l.a.opts.UserAgent))
	}
}

// answer sends the 200 with the SDP answer, waits for the ACK and brings
// the carrier up. The receiver starts before the 200 leaves so that the
// caller's first packets are not lost.
func (l *Line) answer(c *call, ds *sipgo.DialogServerSession, f format) (phone.Carrier, error) {
	drainSocket(l.rtpConn)
	m := newMedia(l.rtpConn, c.remote, f.PT, l.a.opts.Speed, &l.stats, l.log)
	m.startRecv()
	// RFC 3264 §6.1: the answer uses the offer's payload type numbers.
	ans := sdpDesc{SessID: uint64(randUint32()), SessVer: 1, Addr: l.rtpAddr.Addr(), Port: int(l.rtpAddr.Port()),
		Formats: []format{f}, Ptime: sdpPtime, Dir: "sendrecv"}
	body := ans.marshal()
	res := sip.NewSDPResponseFromRequest(ds.InviteRequest, body)
	res.AppendHeader(sip.NewHeader("Server", l.a.opts.UserAgent))
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	l.mu.Lock()
	c.localSDP = body
	l.mu.Unlock()
	if err := ds.WriteResponse(res); err != nil { // blocks until the ACK
		m.end()
		return nil, err
	}
	if l.cfg.ReInviteOnAnswer {
		l.reInvite(c, ds, &ans)
		l.mu.Lock()
		m.setRemote(c.remote)
		l.mu.Unlock()
	}
	m.startSend()
	l.mu.Lock()
	c.m, c.state = m, Connected
	l.mu.Unlock()
	l.log.Info("answered", "call", c.id, "rtp_to", c.remote.String(), "payload", f.Encoding)
	l.a.notify(l)
	return &carrier{l: l, c: c, m: m}, nil
}

// onReInvite answers a target refresh or session change inside the call
// with the current SDP (RFC 3264 §8: unchanged, same version). The media
// follows a new address if the offer moved it.
func (l *Line) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	c := l.current(req.CallID().Value())
	l.mu.Lock()
	var (
		m     rtpPath
		body  []byte
		stale bool
	)
	if c != nil && c.state == Connected {
		body = c.localSDP
		switch {
		case c.m != nil:
			m = c.m
		case c.audio != nil:
			m = c.audio
		}
		// RFC 3261 §12.2.2: a request with a lower CSeq than the last one
		// from the remote side is out of order → 500. (sipgo's own check
		// starts a UAC dialog at our CSeq, which is not the peer's space.)
		seq := req.CSeq().SeqNo
		stale = c.remoteSeen && seq <= c.remoteCSeq
		c.remoteCSeq, c.remoteSeen = max(seq, c.remoteCSeq), true
	}
	l.mu.Unlock()
	if m == nil {
		l.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if stale {
		l.respond(req, tx, sip.StatusInternalServerError, "Server Internal Error")
		return
	}
	if len(req.Body()) > 0 {
		offer, err := parseSDP(req.Body())
		if err != nil || !offerHas(offer, c.payload.PT) {
			l.respond(req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here")
			return
		}
		if to := offer.rtpAddr(); to != m.remoteAddr() {
			l.log.Info("re-INVITE moves media", "call", c.id, "rtp_to", to.String())
			m.setRemote(to)
			l.mu.Lock()
			c.remote = to
			l.mu.Unlock()
		}
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", body)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(sip.HeaderClone(&l.contact))
	res.AppendHeader(sip.NewHeader("Server", l.a.opts.UserAgent))
	if err := tx.Respond(res); err != nil {
		l.log.Info("re-INVITE 200 failed", "err", err)
		return
	}
	l.reRecv.Add(1)
}

// reInvite sends a re-INVITE with our session, version raised (RFC 3264
// §8), inside the answered dialog ds, and ACKs its 2xx.
func (l *Line) reInvite(c *call, ds *sipgo.DialogServerSession, local *sdpDesc) {
	ctx, cancel := context.WithTimeout(l.life, 8*time.Second)
	defer cancel()
	local.SessVer++
	body := local.marshal()
	l.mu.Lock()
	c.localSDP = body
	l.mu.Unlock()
	target := l.remoteTarget(ds.InviteRequest.Contact(), ds.InviteRequest.Recipient)
	req := sip.NewRequest(sip.INVITE, target)
	l.decorate(req)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(body)
	res, err := ds.Do(ctx, req)
	if err != nil {
		l.log.Info("re-INVITE failed", "call", c.id, "err", err)
		return
	}
	if !res.IsSuccess() {
		l.log.Info("re-INVITE refused", "call", c.id, "code", res.StatusCode)
		return
	}
	ack := sip.NewRequest(sip.ACK, target)
	l.decorate(ack)
	if err := ds.WriteRequest(ack); err != nil {
		l.log.Info("re-INVITE ACK failed", "call", c.id, "err", err)
	}
	if ans, err := parseSDP(res.Body()); err == nil && ans.Port != 0 && offerHas(ans, c.payload.PT) {
		l.mu.Lock()
		c.remote = ans.rtpAddr()
		l.mu.Unlock()
	}
	l.reSent.Add(1)
	l.log.Info("re-INVITE done", "call", c.id)
}

func offerHas(d *sdpDesc, pt uint8) bool {
	for _, f := range d.Formats {
		if f.PT == pt {
			return true
		}
	}
	return false
}
