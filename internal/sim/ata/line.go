package ata

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/isp-box/isp-box/internal/sim/phone"
)

// CallState is what a line's port is doing.
type CallState int

// Call states of a line.
const (
	Idle      CallState = iota // on hook, no call
	Dialing                    // INVITE sent, waiting for the answer
	Ringing                    // INVITE received, ringing the modem
	Connected                  // answered, carrier up
)

func (s CallState) String() string {
	switch s {
	case Idle:
		return "idle"
	case Dialing:
		return "dialing"
	case Ringing:
		return "ringing"
	case Connected:
		return "connected"
	}
	return "CallState(" + strconv.Itoa(int(s)) + ")"
}

// LineInfo is the state of one line, for status views.
type LineInfo struct {
	Index      int            // 0-based port number
	Name       string         // LineConfig.Name
	User       string         // SIP user id
	SIP        netip.AddrPort // local SIP address
	Registrar  netip.AddrPort // zero if the line does not register
	Registered bool           // holds a current registration
	Expires    time.Duration  // lifetime the registrar granted
	RegError   string         // why the last registration failed, "" if it did not
	RTP        netip.AddrPort // local RTP address
	Call       CallState      // what the port is doing
	Peer       string         // the other party: dialled number or caller id
	RemoteRTP  netip.AddrPort // where RTP goes (from the SDP received)
	Payload    string         // CLEARMODE or PCMU or PCMA while a call is up
	Media      MediaStats     // RTP counters over the line's life
	ReInvites  ReInviteStats  // in-dialog INVITEs over the line's life
}

// ReInviteStats counts re-INVITEs.
type ReInviteStats struct {
	Sent     uint64 // sent (ReInviteOnAnswer) and answered 2xx
	Received uint64 // received and answered 200
}

// Line is one phone port of the ATA and its SIP user agent. It implements
// phone.Line for the modem plugged into it.
type Line struct {
	a       *ATA
	idx     int
	cfg     LineConfig
	log     *slog.Logger
	sipConn *readyConn
	rtpConn *net.UDPConn
	sipAddr netip.AddrPort
	rtpAddr netip.AddrPort

	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cli     *sipgo.Client
	dua     sipgo.DialogUA
	contact sip.ContactHeader

	life    context.Context // ends when Run stops the line
	kill    context.CancelFunc
	running atomic.Bool
	stats   mediaCounters
	reSent  atomic.Uint64
	reRecv  atomic.Uint64

	mu         sync.Mutex // guards the fields below
	ringer     phone.Ringer
	cur        *call // at most one call per port
	registered bool
	granted    time.Duration
	regErr     string
}

var _ phone.Line = (*Line)(nil)

// call is the one call a port can have.
type call struct {
	id       string // Call-ID
	outgoing bool
	peer     string
	payload  format
	remote   netip.AddrPort

	// guarded by Line.mu
	state    CallState
	uac      *sipgo.DialogClientSession
	uas      *sipgo.DialogServerSession
	m        *media
	localSDP []byte // our current session description, to answer re-INVITEs
	// remoteCSeq is the last CSeq the peer used in this dialog, if remoteSeen
	remoteCSeq uint32
	remoteSeen bool

	endOnce sync.Once
}

// readyConn tells when sipgo's UDP transport has started reading, which is
// after it put the listener in its connection pool: only then do requests
// sent with the listener as local address go out of it.
type readyConn struct {
	*net.UDPConn
	once  sync.Once
	ready chan struct{}
}

func (c *readyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.once.Do(func() { close(c.ready) })
	return c.UDPConn.ReadFrom(b)
}

func newLine(a *ATA, idx int, cfg LineConfig, rtpPort int) (*Line, error) {
	bind := a.opts.Bind
	if bind.IsUnspecified() {
		return nil, errors.New("bind address must be a concrete IP: it goes into Contact and SDP")
	}
	sc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, uint16(cfg.Port))))
	if err != nil {
		return nil, fmt.Errorf("sip socket: %w", err)
	}
	rc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, uint16(rtpPort))))
	if err != nil {
		sc.Close()
		return nil, fmt.Errorf("rtp socket: %w", err)
	}
	l := &Line{
		a: a, idx: idx, cfg: cfg,
		sipConn: &readyConn{UDPConn: sc, ready: make(chan struct{})},
		rtpConn: rc,
		sipAddr: sc.LocalAddr().(*net.UDPAddr).AddrPort(),
		rtpAddr: rc.LocalAddr().(*net.UDPAddr).AddrPort(),
	}
	l.log = a.log.With("line", cfg.Name, "sip", l.sipAddr.String())
	l.life, l.kill = context.WithCancel(context.Background())
	ip := bind.String()
	port := int(l.sipAddr.Port())
	sipLog := l.log.With("comp", "sipgo")
	l.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent(a.opts.UserAgent),
		sipgo.WithUserAgentHostname(ip),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) {
				sipLog.Debug("unmatched response", "res", r.StartLine())
			}),
		),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog)),
	)
	if err == nil {
		l.srv, err = sipgo.NewServer(l.ua, sipgo.WithServerLogger(sipLog))
	}
	if err == nil {
		l.cli, err = sipgo.NewClient(l.ua,
			sipgo.WithClientHostname(ip), sipgo.WithClientPort(port),
			sipgo.WithClientConnectionAddr(l.sipAddr.String()),
			sipgo.WithClientLogger(sipLog))
	}
	if err != nil {
		l.closeSockets()
		return nil, fmt.Errorf("sip stack: %w", err)
	}
	l.contact = sip.ContactHeader{
		DisplayName: cfg.DisplayName,
		Address:     sip.Uri{Scheme: "sip", User: cfg.User, Host: ip, Port: port},
	}
	l.dua = sipgo.DialogUA{Client: l.cli, ContactHDR: l.contact}
	l.srv.OnInvite(l.onInvite)
	l.srv.OnAck(l.onAck)
	l.srv.OnBye(l.onBye)
	l.srv.OnCancel(l.onCancel)
	l.srv.OnOptions(l.onOptions)
	l.srv.OnNoRoute(l.onNoRoute)
	return l, nil
}

func (l *Line) closeSockets() {
	l.kill()
	l.sipConn.Close()
	l.rtpConn.Close()
}

// Addr is the line's SIP address (the PAP2T's 5060/5061).
func (l *Line) Addr() netip.AddrPort { return l.sipAddr }

// RTPAddr is the line's RTP address.
func (l *Line) RTPAddr() netip.AddrPort { return l.rtpAddr }

// Name is the line's configured name.
func (l *Line) Name() string { return l.cfg.Name }

// Registered reports whether the line holds a current registration.
func (l *Line) Registered() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.registered
}

// Plug connects a modem to the port: incoming calls ring r. Plug(nil)
// unplugs it (calls then ring unheard until the caller gives up, as on the
// real device).
func (l *Line) Plug(r phone.Ringer) {
	l.mu.Lock()
	l.ringer = r
	l.mu.Unlock()
}

// Info is the line's current state.
func (l *Line) Info() LineInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	li := LineInfo{
		Index: l.idx, Name: l.cfg.Name, User: l.cfg.User,
		SIP: l.sipAddr, Registrar: l.cfg.Registrar,
		Registered: l.registered, Expires: l.granted, RegError: l.regErr,
		RTP: l.rtpAddr, Media: l.stats.snapshot(),
		ReInvites: ReInviteStats{Sent: l.reSent.Load(), Received: l.reRecv.Load()},
	}
	if c := l.cur; c != nil {
		li.Call, li.Peer = c.state, c.peer
		if c.state == Connected {
			li.RemoteRTP, li.Payload = c.remote, c.payload.Encoding
		}
	}
	return li
}

// run serves SIP and keeps the registration until ctx ends.
func (l *Line) run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- l.srv.ServeUDP(l.sipConn) }()
	select {
	case <-l.sipConn.ready:
	case err := <-served:
		l.closeSockets()
		return fmt.Errorf("ata: %s: serve: %w", l.cfg.Name, err)
	}
	l.running.Store(true)
	l.log.Debug("line up", "rtp", l.rtpAddr.String())

	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		l.registerLoop(ctx)
	}()
	<-ctx.Done()
	l.running.Store(false)
	l.kill() // ringing calls answer 480, dials are cancelled

	l.mu.Lock()
	c := l.cur
	l.mu.Unlock()
	if c != nil {
		l.endCall(c, true)
	}
	<-regDone // unregisters on the way out
	l.ua.Close()
	l.closeSockets()
	<-served
	l.log.Debug("line down")
	return nil
}

func (l *Line) current(callID string) *call {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil && l.cur.id == callID {
		return l.cur
	}
	return nil
}

// endCall tears the call down once: stops the media (Read then returns
// io.EOF), sends BYE if sendBye and the call was answered, frees the port.
func (l *Line) endCall(c *call, sendBye bool) {
	c.endOnce.Do(func() {
		l.mu.Lock()
		m, state, uac, uas := c.m, c.state, c.uac, c.uas
		l.mu.Unlock()
		if m != nil {
			m.end()
		}
		if sendBye && state == Connected {
			// RFC 3261 §15.1.1: either side ends the dialog with BYE. Bounded
			// so that a vanished peer cannot hold the modem for Timer F.
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			var err error
			switch {
			case uac != nil:
				bye := sip.NewRequest(sip.BYE, l.remoteTarget(uac.InviteResponse.Contact(), uac.InviteRequest.Recipient))
				l.decorate(bye)
				err = uac.WriteBye(ctx, bye)
			case uas != nil:
				bye := sip.NewRequest(sip.BYE, l.remoteTarget(uas.InviteRequest.Contact(), uas.InviteRequest.Recipient))
				l.decorate(bye)
				err = uas.WriteBye(ctx, bye)
			}
			cancel()
			if err != nil {
				l.log.Info("BYE failed", "call", c.id, "err", err)
			} else {
				l.log.Info("hung up", "call", c.id)
			}
		}
		l.mu.Lock()
		if l.cur == c {
			l.cur = nil
		}
		l.mu.Unlock()
		l.a.notify(l)
	})
}

// remoteTarget is the dialog's remote target (RFC 3261 §12.2.1.1): the
// peer's Contact, else the original Request-URI.
func (l *Line) remoteTarget(ct *sip.ContactHeader, fallback sip.Uri) sip.Uri {
	if ct != nil {
		return *ct.Address.Clone()
	}
	return *fallback.Clone()
}

// decorate pins the local address (requests leave from the line's SIP
// port, as on the PAP2T) and adds the PAP2T's identifying headers.
func (l *Line) decorate(req *sip.Request) {
	req.Laddr = sip.Addr{IP: net.IP(l.sipAddr.Addr().AsSlice()), Port: int(l.sipAddr.Port()), Hostname: l.sipAddr.Addr().String()}
	req.AppendHeader(sip.NewHeader("User-Agent", l.a.opts.UserAgent))
}

func (l *Line) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sip.NewHeader("Server", l.a.opts.UserAgent))
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		l.log.Debug("respond", "code", code, "err", err)
	}
}

// onOptions answers OPTIONS 200 at any time, in a call or not: the PBX's
// qualify relies on it (pbx.md §1, §5).
func (l *Line) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	l.respond(req, tx, sip.StatusOK, "OK",
		sip.NewHeader("Allow", allowMethods),
		sip.NewHeader("Accept", "application/sdp"))
}

func (l *Line) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	l.respond(req, tx, sip.StatusMethodNotAllowed, "Method Not Allowed", sip.NewHeader("Allow", allowMethods))
}

// onCancel sees only CANCELs that matched no INVITE transaction (the
// transaction layer answers the others itself, RFC 3261 §9.2).
func (l *Line) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	l.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
}

func (l *Line) onAck(req *sip.Request, tx sip.ServerTransaction) {
	c := l.current(req.CallID().Value())
	if c == nil {
		return
	}
	l.mu.Lock()
	uas := c.uas
	l.mu.Unlock()
	if uas != nil {
		// An ACK to a re-INVITE's 2xx has another CSeq: not an error.
		_ = uas.ReadAck(req, tx)
	}
}

func (l *Line) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := l.current(req.CallID().Value())
	if c == nil {
		l.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	l.mu.Lock()
	uac, uas := c.uac, c.uas
	l.mu.Unlock()
	var err error
	switch {
	case uas != nil:
		err = uas.ReadBye(req, tx)
	case uac != nil:
		err = uac.ReadBye(req, tx)
	default:
		l.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if err != nil {
		l.log.Info("bad BYE", "call", c.id, "err", err)
		l.respond(req, tx, sip.StatusInternalServerError, "Server Internal Error")
		return
	}
	l.log.Info("far end hung up", "call", c.id)
	l.endCall(c, false)
}

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
		m     *media
		body  []byte
		stale bool
	)
	if c != nil && c.state == Connected {
		m, body = c.m, c.localSDP
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

// Dial places a call (phone.Line). number is a telephone number sent to
// the registrar as the Request-URI user (sip:88567682@registrar), or a SIP
// URI ("sip:user@127.0.0.1:5062", or "user@host:port") dialled directly,
// as the PAP2T's IP dialling does. Errors: phone.ErrNoDialtone when the
// line is not up or not registered, phone.ErrBusy (486, 600), ErrNoAnswer
// (408, 480, 487), ErrNoCarrier (anything else), or ctx's error.
func (l *Line) Dial(ctx context.Context, number string) (phone.Carrier, error) {
	if !l.running.Load() {
		return nil, fmt.Errorf("%w: line not running", phone.ErrNoDialtone)
	}
	target, domain, direct, err := l.target(number)
	if err != nil {
		return nil, err
	}
	if !direct && !l.Registered() {
		return nil, fmt.Errorf("%w: %s not registered", phone.ErrNoDialtone, l.cfg.Name)
	}
	c := &call{outgoing: true, peer: strings.TrimSpace(number), state: Dialing}
	l.mu.Lock()
	if l.cur != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: line in use", phone.ErrBusy)
	}
	l.cur = c
	l.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			l.endCall(c, false)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.life, cancel)
	defer stop()

	drainSocket(l.rtpConn)
	offer := sdpDesc{SessID: uint64(randUint32()), SessVer: 1, Addr: l.rtpAddr.Addr(), Port: int(l.rtpAddr.Port()),
		Formats: offerFormats(), Ptime: sdpPtime, Dir: "sendrecv"}
	req := sip.NewRequest(sip.INVITE, target)
	from := &sip.FromHeader{DisplayName: l.cfg.DisplayName, Address: sip.Uri{Scheme: "sip", User: l.cfg.User, Host: domain.Host, Port: domain.Port}}
	from.Params.Add("tag", newTag())
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: target.User, Host: target.Host, Port: target.Port}}
	callID := sip.CallIDHeader(newTag() + "@" + l.sipAddr.Addr().String())
	c.id = callID.Value()
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 101, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(&l.contact))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(inviteExpires)))
	l.decorate(req)
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	c.localSDP = offer.marshal()
	req.SetBody(c.localSDP)
	l.a.notify(l)
	l.log.Info("dialing", "number", c.peer, "to", target.String(), "call", c.id)

	dc, err := l.dua.WriteInvite(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: INVITE: %w", phone.ErrNoCarrier, err)
	}
	l.mu.Lock()
	c.uac = dc
	l.mu.Unlock()
	if err := l.waitAnswer(ctx, c, dc); err != nil {
		return nil, err
	}
	ans, err := parseSDP(dc.InviteResponse.Body())
	var f format
	if err == nil {
		f, err = pickAnswer(ans, offer.Formats)
	}
	if err != nil {
		// RFC 3261 §13.2.2.4: the 2xx must be ACKed; then end the call.
		_ = dc.Ack(ctx)
		l.mu.Lock()
		c.state = Connected
		l.mu.Unlock()
		l.log.Info("unusable SDP answer", "call", c.id, "err", err)
		l.endCall(c, true)
		return nil, fmt.Errorf("%w: SDP answer: %w", phone.ErrNoCarrier, err)
	}
	c.payload, c.remote = f, ans.rtpAddr()
	m := newMedia(l.rtpConn, c.remote, f.PT, l.a.opts.Speed, &l.stats, l.log)
	m.startRecv()
	// Connected before the ACK leaves: the far side may send a re-INVITE
	// the moment it has the ACK.
	l.mu.Lock()
	c.m, c.state = m, Connected
	l.mu.Unlock()
	if err := dc.Ack(ctx); err != nil {
		return nil, fmt.Errorf("%w: ACK: %w", phone.ErrNoCarrier, err)
	}
	m.startSend()
	ok = true
	l.log.Info("connected", "call", c.id, "rtp_to", c.remote.String(), "payload", f.Encoding)
	l.a.notify(l)
	return &carrier{l: l, c: c, m: m}, nil
}

// waitAnswer waits for the final response to the INVITE. sipgo sends
// CANCEL when ctx ends, but only after a provisional response arrived and
// then waits for the 487; the modem must not hang that long (ATH, S7), so
// waitAnswer returns at once and lets the dialog finish in the background,
// hanging up a 200 that still comes.
func (l *Line) waitAnswer(ctx context.Context, c *call, dc *sipgo.DialogClientSession) error {
	done := make(chan error, 1)
	go func() {
		err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{
			Username: l.cfg.User, Password: l.cfg.Password,
			OnResponse: func(res *sip.Response) error {
				if res.StatusCode == sip.StatusRinging || res.StatusCode == sip.StatusSessionInProgress {
					l.log.Info("far end ringing", "call", c.id, "code", res.StatusCode)
				}
				return nil
			},
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			l.log.Info("dial abandoned", "call", c.id)
			return ctx.Err()
		}
		return l.dialError(c, err)
	case <-ctx.Done():
		l.log.Info("dial abandoned", "call", c.id)
		go func() {
			if err := <-done; err == nil { // answered after all: ACK, then BYE
				bctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
				defer cancel()
				if dc.Ack(bctx) == nil {
					bye := sip.NewRequest(sip.BYE, l.remoteTarget(dc.InviteResponse.Contact(), dc.InviteRequest.Recipient))
					l.decorate(bye)
					_ = dc.WriteBye(bctx, bye)
				}
			}
		}()
		return ctx.Err()
	}
}

// pickAnswer finds the payload the answerer chose: the first of its
// formats that was in the offer (RFC 3264 §6.1 keeps the numbers).
func pickAnswer(ans *sdpDesc, offered []format) (format, error) {
	if ans.Port == 0 {
		return format{}, errSDPNoCodec
	}
	for _, a := range ans.Formats {
		for _, o := range offered {
			if a.PT == o.PT {
				return o, nil
			}
		}
	}
	return format{}, errSDPNoCodec
}

// dialError maps a failed INVITE to what the modem reports.
func (l *Line) dialError(c *call, err error) error {
	var code int
	var reason string
	var pe *sipgo.ErrDialogResponse
	var ve sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &pe):
		code, reason = pe.Res.StatusCode, pe.Res.Reason
	case errors.As(err, &ve):
		code, reason = ve.Res.StatusCode, ve.Res.Reason
	default:
		l.log.Info("dial failed", "call", c.id, "err", err)
		return fmt.Errorf("%w: %w", phone.ErrNoCarrier, err)
	}
	l.log.Info("dial failed", "call", c.id, "code", code, "reason", reason)
	return fmt.Errorf("%w (SIP %d %s)", codeError(code), code, reason)
}

// codeError is the Hayes result a SIP final response turns into.
func codeError(code int) error {
	switch code {
	case sip.StatusBusyHere, 600: // 600 Busy Everywhere
		return phone.ErrBusy
	case sip.StatusRequestTimeout, sip.StatusTemporarilyUnavailable, sip.StatusRequestTerminated:
		return phone.ErrNoAnswer
	}
	return phone.ErrNoCarrier
}

// target turns what the modem dialled into a Request-URI and the domain
// for From. A number goes to the registrar; a SIP URI is dialled directly.
func (l *Line) target(number string) (target, domain sip.Uri, direct bool, err error) {
	number = strings.TrimSpace(number)
	if number == "" {
		return target, domain, false, fmt.Errorf("%w: empty number", phone.ErrNoCarrier)
	}
	if strings.HasPrefix(number, "sip:") || strings.Contains(number, "@") {
		s := number
		if !strings.HasPrefix(s, "sip:") {
			s = "sip:" + s
		}
		if err := sip.ParseUri(s, &target); err != nil {
			return target, domain, false, fmt.Errorf("%w: bad SIP URI %q: %w", phone.ErrNoCarrier, number, err)
		}
		domain = sip.Uri{Host: l.sipAddr.Addr().String(), Port: int(l.sipAddr.Port())}
		return target, domain, true, nil
	}
	if !l.cfg.Registrar.IsValid() {
		return target, domain, false, fmt.Errorf("%w: %s has no registrar to route %q", phone.ErrNoDialtone, l.cfg.Name, number)
	}
	domain = l.registrarURI()
	target = sip.Uri{Scheme: "sip", User: number, Host: domain.Host, Port: domain.Port}
	return target, domain, false, nil
}

// registrarURI is sip:host[:port] of the registrar, port omitted when 5060
// as the PAP2T writes its "Proxy" setting.
func (l *Line) registrarURI() sip.Uri {
	u := sip.Uri{Scheme: "sip", Host: l.cfg.Registrar.Addr().Unmap().String()}
	if p := int(l.cfg.Registrar.Port()); p != 5060 && p != 0 {
		u.Port = p
	}
	return u
}

func newTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// carrier is the phone.Carrier of an answered call.
type carrier struct {
	l *Line
	c *call
	m *media
}

var _ phone.Carrier = (*carrier)(nil)

func (k *carrier) Read(p []byte) (int, error)  { return k.m.Read(p) }
func (k *carrier) Write(p []byte) (int, error) { return k.m.Write(p) }
func (k *carrier) Speed() int                  { return k.m.speed }

// Close hangs up: BYE to the far end, unless it hung up first.
func (k *carrier) Close() error {
	k.l.endCall(k.c, true)
	return nil
}
