package ata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
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
	audio    *audioMedia // a Softmodem line's call: the modem on the RTP
	localSDP []byte      // our current session description, to answer re-INVITEs
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
	sipLog := l.log.With("lib", "sipgo")
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
		m, a, state, uac, uas := c.m, c.audio, c.state, c.uac, c.uas
		l.mu.Unlock()
		if m != nil {
			m.end()
		}
		if a != nil {
			a.end()
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
// qualify relies on it (chan_sip's qualify, sip_poke_peer in chan_sip.c: an unanswered OPTIONS makes the peer UNREACHABLE).
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
