package ppp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/ppp/chap"
	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/ipcp"
	"github.com/isp-box/isp-box/ppp/lcp"
	"github.com/isp-box/isp-box/ppp/pap"
)

// Options are the per-session inputs of Serve that are not PPP options.
type Options struct {
	Bus     *bus.Bus     // PPPPhase, PPPUp, PPPDown; nil = none
	Log     *slog.Logger // nil = silent
	Clock   Clock        // nil = the real clock
	Line    string       // modem line name
	CallID  string       // SIP call that carried the modem call
	Session string       // session id; "" = generated

	// CallerID is who called, for the records: a TCP line's client
	// address, the SIP caller of a modem call.
	CallerID string

	// Users are the secrets (pap-secrets lines). Secrets, if set, wins.
	Users   []User
	Secrets Secrets
	// Authenticator, if set, checks users that Secrets has no line for
	// (RADIUS). Its answer can set the session's address and limits.
	Authenticator Authenticator
	Network       Network // the IP side; nil = addresses from Config only, packets dropped
	// LoggedInUser is set when the caller already logged in at the text
	// login prompt (the seed's `dial` user whose shell was pppd);
	// authentication is then as configured (usually noauth).
	LoggedInUser string
	Registry     *Sessions // optional: live sessions for `isp-box sessions`
	// Preread holds octets already read from rw (by the AutoPPP detector)
	// that belong to the session; they are read before rw. Without it the
	// client's first Configure-Request is lost and negotiation waits for its
	// retransmission (3 s), as with mgetty.
	Preread []byte
}

// Record is a finished session's accounting record; Serve also publishes it
// as bus.PPPDown.
type Record struct {
	Session, Line, CallID string
	CallerID              string // Options.CallerID
	User                  string
	Auth                  AuthProto
	Local, Remote         netip.Addr
	Start, Up, End        time.Time // Up is zero if IPCP never opened
	BytesIn, BytesOut     uint64    // IP octets from / to the client
	PktsIn, PktsOut       uint64
	Dropped               uint64
	FCSErrors             uint64
	Cause                 string
	AAA                   string // who authenticated the user: file, radius, login, or "" (none)
}

// Serve runs one server session on rw until it ends: the peer's
// Terminate-Request, echo failure, idle, maxconnect, authentication failure,
// ctx done (a clean Terminate-Request first) or rw failing (carrier lost).
// Serve closes rw before it returns. The Record says how the session went
// (Cause); the error is reserved for failures to start and is nil today.
func Serve(ctx context.Context, rw io.ReadWriteCloser, cfg Config, opts Options) (Record, error) {
	id := opts.Session
	if id == "" {
		var b [4]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("comp", "ppp", "session", id, "line", opts.Line)
	// Ends a pending Authenticator call when the session ends first.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sec := opts.Secrets
	if sec == nil {
		sec = UserList(opts.Users)
	}
	if cfg.Name == "" {
		cfg.Name = "isp-box"
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 30 * time.Second
	}
	if cfg.RequireAuth && len(cfg.Auth) == 0 {
		// pppd auth without a protocol option: CHAP (strongest first), then PAP.
		cfg.Auth = []AuthProto{AuthMSCHAPv2, AuthMSCHAP, AuthCHAP, AuthPAP}
	}
	if len(opts.Preread) > 0 {
		rw = &prereadRW{ReadWriteCloser: rw, pre: opts.Preread}
	}
	srv := &server{opts: opts, secrets: sec, ctx: ctx,
		ask: askAll, reqAuth: cfg.RequireAuth, authDead: map[AuthProto]bool{}, reqAddr: true, reqVJ: cfg.VJ}
	s := newSession(id, rw, cfg, srv, opts.Clock, log)
	srv.vjSlots = uint8(min(max(cfg.VJMaxSlots, 1), 256) - 1)
	if cfg.VJMaxSlots <= 0 {
		srv.vjSlots = 15
	}
	s.info = &liveInfo{stats: &s.stats, fcs: s.dec.Stats.FCSErrors.Load}
	s.info.info = SessionInfo{ID: id, Line: opts.Line, CallID: opts.CallID, CallerID: opts.CallerID, Start: s.clock.Now(), User: opts.LoggedInUser}
	if opts.LoggedInUser != "" {
		srv.aaa = "login"
		s.info.info.AAA = srv.aaa
	}
	s.user = opts.LoggedInUser
	if opts.Bus != nil {
		s.onPhase = func(p Phase, d string) {
			opts.Bus.Publish(bus.PPPPhase{Session: id, Line: opts.Line, Phase: bus.LinkPhase(p.String()), Detail: d})
		}
	}
	opts.Registry.add(id, s.info)
	defer opts.Registry.remove(id)

	s.run(ctx)

	if srv.link != nil {
		srv.link.Close()
	}
	rec := Record{
		Session: id, Line: opts.Line, CallID: opts.CallID, CallerID: opts.CallerID, User: s.user, Auth: s.authProto,
		Local: srv.local, Remote: srv.remote, Start: s.start, Up: s.upAt, End: s.clock.Now(),
		BytesIn: s.stats.BytesIn.Load(), BytesOut: s.stats.BytesOut.Load(),
		PktsIn: s.stats.PktsIn.Load(), PktsOut: s.stats.PktsOut.Load(),
		Dropped: s.stats.Dropped.Load(), FCSErrors: s.dec.Stats.FCSErrors.Load(), Cause: s.cause,
		AAA: srv.aaa,
	}
	log.Info("session ended", "cause", rec.Cause, "in", rec.BytesIn, "out", rec.BytesOut, "duration", rec.End.Sub(rec.Start).Round(time.Second))
	if opts.Bus != nil {
		opts.Bus.Publish(bus.PPPDown{Session: id, Line: opts.Line, User: rec.User, Remote: rec.Remote,
			Start: rec.Start, End: rec.End, BytesIn: rec.BytesIn, BytesOut: rec.BytesOut,
			PktsIn: rec.PktsIn, PktsOut: rec.PktsOut, Cause: rec.Cause, CallID: opts.CallID, CallerID: opts.CallerID})
	}
	return rec, nil
}

// server is the server role: pppd's negotiation policy.
type server struct {
	opts    Options
	secrets Secrets
	ctx     context.Context

	// Which of our LCP options we still request (cleared by Reject).
	ask     lcpAsk
	reqAuth bool

	// Authentication.
	authIdx   int                // index in cfg.Auth of the protocol we request
	authDead  map[AuthProto]bool // protocols the client refused
	chapID    uint8
	challenge []byte
	chapTries int
	authOK    bool
	authName  string
	failPkt   *cp.Packet // delayed failure answer
	failProto uint16
	lastOK    *cp.Packet // last success, resent on a retransmitted response
	lastOKID  uint8
	// pending is set while the Authenticator is asked; the peer's
	// retransmissions are ignored meanwhile.
	pending   bool
	pendingID uint8
	authGen   int          // counts remoteAuth calls: a late answer to an earlier one is dropped
	aaa       string       // who authenticated: file, radius, login
	authDNS   []netip.Addr // resolvers the Authenticator chose

	// IPCP.
	link           NetLink
	local, remote  netip.Addr
	dns, wins      []netip.Addr
	reqAddr, reqVJ bool
	vjSlots        uint8 // our Max-Slot-Id
	peerVJ         *ipcp.Compression
}

func (r *server) curAuth(s *session) AuthProto {
	if r.authIdx < len(s.cfg.Auth) {
		return s.cfg.Auth[r.authIdx]
	}
	return ""
}

func (r *server) lcpRequest(s *session) cp.Options {
	var o, auth cp.Options
	if s.mru != lcp.DefaultMRU {
		o = append(o, lcp.MRU(s.mru).Encode())
	}
	if r.reqAuth && r.curAuth(s) != "" {
		auth = append(auth, authOption(r.curAuth(s)).Encode())
	}
	return r.ask.appendTo(o, s, auth...)
}

// lcpCheck judges the client's LCP request as pppd's lcp_reqci does: an
// MRU below 128 (MINMRU) is Nak'd with 128; Authentication-Protocol (we do
// not authenticate ourselves to the client), Callback/CBCP, MRRU, endpoint
// and link discriminators, quality protocol and unknown types are rejected.
func (r *server) lcpCheck(s *session, opts cp.Options, rejectOnly bool) (cp.Code, cp.Options) {
	code, reply, _ := checkLCP(s, opts, rejectOnly, 128, func(lcp.Option) (cp.Options, bool) { return nil, true })
	return code, reply
}

// lcpNak adopts what the client suggests for our options (RFC 1661 §5.3):
// a smaller MRU, more escaped characters, a new magic number, or another
// authentication protocol if our list allows it.
func (r *server) lcpNak(s *session, opts cp.Options) {
	for _, o := range opts {
		d, err := lcp.Decode(o)
		if err != nil {
			continue
		}
		switch v := d.(type) {
		case lcp.MRU:
			if v >= 128 && int(v) < s.mru {
				s.mru = int(v)
			}
		case lcp.ACCM:
			s.cfg.AsyncMap |= uint32(v)
		case lcp.Magic:
			s.magic = newMagic()
		case lcp.Auth:
			// The client suggests another protocol: take it if we allow
			// it, else move to our next preference.
			cur := r.curAuth(s)
			r.authDead[cur] = true
			if p, ok := authProtoOf(v); ok && !r.authDead[p] {
				if i := slices.Index(s.cfg.Auth, p); i >= 0 {
					r.authIdx = i
					continue
				}
			}
			for i, p := range s.cfg.Auth {
				if !r.authDead[p] {
					r.authIdx = i
					break
				}
			}
		}
	}
}

// lcpReject stops asking for options the client rejected (RFC 1661 §5.4);
// a rejected Authentication-Protocol ends the link when auth is required.
func (r *server) lcpReject(s *session, opts cp.Options) {
	for _, o := range opts {
		r.ask.rejected(s, o.Type)
		switch o.Type {
		case lcp.OptMRU:
			s.mru = lcp.DefaultMRU
		case lcp.OptAuth:
			if r.reqAuth {
				// pppd: "peer refused to authenticate: terminating link".
				s.log.Warn("peer refused to authenticate")
				s.closeSoon(CauseAuthRefused, "peer refused to authenticate")
			}
		}
	}
}

// ---- authentication (server side) ----

// authStart begins the authentication phase with the protocol the client
// acked: PAP waits for the client's request, CHAP sends a Challenge (16
// random octets; 8 for MS-CHAPv1, RFC 2433 §2).
func (r *server) authStart(s *session) bool {
	if !r.reqAuth || r.curAuth(s) == "" {
		return false
	}
	s.authProto = r.curAuth(s)
	s.info.update(func(i *SessionInfo) { i.Auth = string(s.authProto) })
	switch s.authProto {
	case AuthPAP:
		s.setTimer(tAuth, s.cfg.AuthTimeout)
	default:
		n := 16
		if s.authProto == AuthMSCHAP {
			n = chap.MSv1ChallengeLen
		}
		r.challenge = make([]byte, n)
		rand.Read(r.challenge)
		r.chapID = s.lcp.NextID()
		r.chapTries = 0
		r.sendChallenge(s)
	}
	return true
}

func (r *server) sendChallenge(s *session) {
	r.chapTries++
	v := chap.Value{Value: r.challenge, Name: s.cfg.Name}
	b, _ := v.Marshal()
	s.sendCP(chap.Protocol, cp.Packet{Code: cp.Code(chap.Challenge), ID: r.chapID, Data: b})
	s.setTimer(tAuth, s.restart())
}

// authTimeout retransmits the Challenge every restart period (RFC 1994
// §4.1) up to Max-Configure times, or gives up waiting for PAP.
func (r *server) authTimeout(s *session) {
	if r.authOK || s.phase != PhaseAuthenticate {
		return
	}
	if r.pending {
		s.log.Warn("authentication server did not answer in time", "proto", s.authProto)
		r.pending = false
		r.fail(s, r.failProtoOf(s), r.failPacket(s, r.pendingID, ""))
		return
	}
	if s.authProto != AuthPAP && r.chapTries < max(s.cfg.MaxConfigure, 1) {
		r.sendChallenge(s)
		return
	}
	s.log.Warn("peer did not authenticate in time", "proto", s.authProto)
	s.closeSoon(CauseAuth, "Authentication timeout")
}

func (r *server) authInput(s *session, proto uint16, p cp.Packet) {
	switch {
	case proto == pap.Protocol && s.authProto == AuthPAP && p.Code == cp.Code(pap.AuthReq):
		r.papRequest(s, p)
	case proto == chap.Protocol && s.authProto != AuthPAP && s.authProto != "" && p.Code == cp.Code(chap.Response):
		r.chapResponse(s, p)
	default:
		s.log.Debug("unexpected authentication packet", "proto", lcp.ProtocolName(proto), "code", p.Code)
	}
}

func (r *server) lookup(s *session, name string) (string, []string, bool) {
	return r.secrets.Lookup(name, s.cfg.Name)
}

// papRequest checks an Authenticate-Request (RFC 1334 §2.2.1). One wrong
// password ends the call, as pppd; the answer is delayed (fail).
func (r *server) papRequest(s *session, p cp.Packet) {
	if r.authOK {
		// Our Ack was lost: answer the retransmission the same way.
		s.sendCP(pap.Protocol, cp.Packet{Code: cp.Code(pap.AuthAck), ID: p.ID, Data: pap.Message("Login ok").Marshal()})
		return
	}
	if r.failPkt != nil || r.pending || s.phase != PhaseAuthenticate {
		return
	}
	var req pap.Request
	if err := req.Unmarshal(p.Data); err != nil {
		s.log.Debug("bad PAP request", "err", err)
		return
	}
	secret, addrs, ok := r.lookup(s, req.PeerID)
	pw := "<hidden>"
	if s.cfg.ShowPassword {
		pw = req.Password
	}
	if !ok && r.opts.Authenticator != nil {
		r.remoteAuth(s, p.ID, AuthRequest{Proto: AuthPAP, User: req.PeerID, Password: req.Password}, func(res AuthResult) {
			if res.OK {
				s.log.Info("PAP peer authentication succeeded", "user", req.PeerID, "by", res.Source)
				s.sendCP(pap.Protocol, cp.Packet{Code: cp.Code(pap.AuthAck), ID: p.ID, Data: pap.Message("Login ok").Marshal()})
				r.authSucceeded(s, req.PeerID, nil)
				return
			}
			s.log.Warn("PAP peer authentication failed", "user", req.PeerID, "password", pw, "by", res.Source, "message", res.Message)
			r.fail(s, pap.Protocol, r.failPacket(s, p.ID, res.Message))
		})
		return
	}
	if ok && (secret == AnyLogin || subtle.ConstantTimeCompare([]byte(secret), []byte(req.Password)) == 1) {
		if secret == AnyLogin {
			s.log.Info("PAP login accepted by the any-login rule", "user", req.PeerID)
		}
		s.log.Info("PAP peer authentication succeeded", "user", req.PeerID)
		s.log.Debug("PAP credentials", "user", req.PeerID, "password", pw)
		s.sendCP(pap.Protocol, cp.Packet{Code: cp.Code(pap.AuthAck), ID: p.ID, Data: pap.Message("Login ok").Marshal()})
		r.aaa = "file"
		r.authSucceeded(s, req.PeerID, addrs)
		return
	}
	s.log.Warn("PAP peer authentication failed", "user", req.PeerID, "password", pw)
	r.fail(s, pap.Protocol, r.failPacket(s, p.ID, ""))
}

// chapResponse checks a Response to our Challenge (RFC 1994 §4.1) with the
// negotiated algorithm; MS-CHAPv2's Success carries the authenticator
// response that proves we know the password too (RFC 2759 §5).
func (r *server) chapResponse(s *session, p cp.Packet) {
	if r.authOK {
		if r.lastOK != nil && p.ID == r.lastOKID {
			s.sendCP(chap.Protocol, *r.lastOK)
		}
		return
	}
	if r.failPkt != nil || r.pending || p.ID != r.chapID || s.phase != PhaseAuthenticate {
		return
	}
	var v chap.Value
	if err := v.Unmarshal(p.Data); err != nil {
		s.log.Debug("bad CHAP response", "err", err)
		return
	}
	alg := map[AuthProto]uint8{AuthCHAP: chap.MD5, AuthMSCHAP: chap.MSCHAPv1, AuthMSCHAPv2: chap.MSCHAPv2}[s.authProto]
	secret, addrs, found := r.lookup(s, v.Name)
	if !found && r.opts.Authenticator != nil {
		req := AuthRequest{Proto: s.authProto, User: v.Name, ID: p.ID, Challenge: r.challenge, Response: bytes.Clone(v.Value)}
		r.remoteAuth(s, p.ID, req, func(res AuthResult) {
			if res.OK && alg == chap.MSCHAPv2 && !strings.HasPrefix(res.MSCHAPv2Success, "S=") {
				// The client checks the server's proof; without it the
				// accept is useless to it.
				s.log.Warn("authentication server accepted MS-CHAPv2 without MS-CHAP2-Success", "user", v.Name)
				res.OK = false
			}
			r.chapVerdict(s, p.ID, v.Name, res.OK, res.MSCHAPv2Success, nil, res.Message, res.Source)
		})
		return
	}
	ok, authResp := false, ""
	switch {
	case found && secret == AnyLogin && alg == chap.MSCHAPv2:
		// The client checks our proof that we know its password
		// (RFC 2759 §5); without the password there is none to give.
		s.log.Warn("any-login cannot accept MS-CHAPv2: it needs the password; offer PAP, CHAP or MS-CHAPv1", "user", v.Name)
	case found && secret == AnyLogin:
		s.log.Info("CHAP login accepted by the any-login rule", "user", v.Name, "proto", s.authProto)
		ok = true
	case found:
		ok, authResp = chap.Verify(alg, p.ID, r.challenge, v.Value, v.Name, secret)
	}
	if !found {
		s.log.Debug("CHAP peer unknown", "user", v.Name)
	}
	r.chapVerdict(s, p.ID, v.Name, ok, authResp, addrs, "", "file")
}

// chapVerdict answers a CHAP Response with Success or (delayed) Failure.
func (r *server) chapVerdict(s *session, id uint8, user string, ok bool, authResp string, addrs []string, message, by string) {
	alg := map[AuthProto]uint8{AuthCHAP: chap.MD5, AuthMSCHAP: chap.MSCHAPv1, AuthMSCHAPv2: chap.MSCHAPv2}[s.authProto]
	if ok {
		msg := "Access granted"
		if alg == chap.MSCHAPv2 {
			msg = authResp + " M=Access granted"
		}
		pk := cp.Packet{Code: cp.Code(chap.Success), ID: id, Data: []byte(msg)}
		r.lastOK, r.lastOKID = &pk, id
		s.log.Info("CHAP peer authentication succeeded", "user", user, "proto", s.authProto, "by", by)
		s.sendCP(chap.Protocol, pk)
		if by == "file" {
			r.aaa = by
		}
		r.authSucceeded(s, user, addrs)
		return
	}
	s.log.Warn("CHAP peer authentication failed", "user", user, "proto", s.authProto, "by", by, "message", message)
	r.fail(s, chap.Protocol, r.failPacket(s, id, message))
}

// failProtoOf is the protocol whose Nak/Failure answers the peer.
func (r *server) failProtoOf(s *session) uint16 {
	if s.authProto == AuthPAP {
		return pap.Protocol
	}
	return chap.Protocol
}

// failPacket is the negative answer to the peer, carrying text (a RADIUS
// Reply-Message) when there is one: PAP's Authenticate-Nak message, CHAP's
// Failure message, MS-CHAPv2's M= (RFC 2759 §6). MS-CHAP's E=691 is
// "authentication failure"; R=0 because one failure ends the call.
func (r *server) failPacket(s *session, id uint8, text string) cp.Packet {
	text = strings.Map(func(c rune) rune {
		if c < ' ' {
			return ' '
		}
		return c
	}, text)
	switch s.authProto {
	case AuthPAP:
		if text == "" {
			text = "Login incorrect"
		}
		return cp.Packet{Code: cp.Code(pap.AuthNak), ID: id, Data: pap.Message(text).Marshal()}
	case AuthMSCHAP:
		return cp.Packet{Code: cp.Code(chap.Failure), ID: id, Data: []byte("E=691 R=0")}
	case AuthMSCHAPv2:
		if text == "" {
			text = "Access denied"
		}
		msg := fmt.Sprintf("E=691 R=0 C=%s V=3 M=%s", strings.ToUpper(hex.EncodeToString(r.challenge)), text)
		return cp.Packet{Code: cp.Code(chap.Failure), ID: id, Data: []byte(msg)}
	default: // AuthCHAP: after the switch
	}
	if text == "" {
		text = "Access denied"
	}
	return cp.Packet{Code: cp.Code(chap.Failure), ID: id, Data: []byte(text)}
}

// remoteAuth asks the Authenticator without blocking the session: the
// verdict comes back through the session's event queue. A server that does
// not answer is a failure (the peer cannot wait for ever; pppd's radius
// plugin does the same).
func (r *server) remoteAuth(s *session, id uint8, req AuthRequest, done func(AuthResult)) {
	r.pending, r.pendingID = true, id
	r.authGen++
	gen := r.authGen
	req.Session, req.Line, req.CallID = s.id, r.opts.Line, r.opts.CallID
	s.setTimer(tAuth, s.cfg.AuthTimeout)
	if s.onPhase != nil {
		s.onPhase(PhaseAuthenticate, string(s.authProto)+" checking")
	}
	ctx, auth := r.ctx, r.opts.Authenticator
	go func() {
		res, err := auth.Authenticate(ctx, req)
		if err != nil {
			s.log.Error("authentication server gave no answer", "user", req.User, "err", err)
			res = AuthResult{Source: res.Source}
		}
		select {
		case s.events <- func() {
			if !r.pending || gen != r.authGen || r.authOK || s.phase != PhaseAuthenticate {
				return // timed out, or the link went down meanwhile
			}
			r.pending = false
			if res.OK {
				r.applyAuth(s, res)
			}
			done(res)
		}:
		case <-s.stop:
		}
	}()
}

// applyAuth takes the reply attributes of an accept: the client's
// address (over the pool's), maxconnect, idle, MTU and resolvers.
func (r *server) applyAuth(s *session, res AuthResult) {
	r.aaa = res.Source
	if r.aaa == "" {
		r.aaa = "remote"
	}
	if res.Addr.Is4() {
		r.remote = res.Addr
	}
	if res.SessionTimeout > 0 && (s.cfg.MaxConnect <= 0 || res.SessionTimeout < s.cfg.MaxConnect) {
		s.cfg.MaxConnect = res.SessionTimeout
	}
	if res.IdleTimeout > 0 {
		s.cfg.Idle = res.IdleTimeout
	}
	if res.MTU >= 128 && (s.cfg.MTU <= 0 || res.MTU < s.cfg.MTU) {
		s.cfg.MTU = res.MTU
	}
	if len(res.DNS) > 0 {
		r.authDNS = slices.Clone(res.DNS)
	}
}

// fail answers a failed authentication after AuthFailDelay (slowing down
// guessing), then closes the link: one failure ends the call, as pppd.
func (r *server) fail(s *session, proto uint16, p cp.Packet) {
	r.failPkt, r.failProto = &p, proto
	s.stopTimer(tAuth)
	if s.onPhase != nil {
		s.onPhase(PhaseAuthenticate, string(s.authProto)+" failed")
	}
	if s.cfg.AuthFailDelay <= 0 {
		r.authDelayed(s)
		return
	}
	s.setTimer(tAuthDelay, s.cfg.AuthFailDelay)
}

func (r *server) authDelayed(s *session) {
	if r.failPkt == nil {
		return
	}
	s.sendCP(r.failProto, *r.failPkt)
	s.closeSoon(CauseAuth, "Authentication failed")
}

func (r *server) authSucceeded(s *session, user string, addrs []string) {
	r.authOK = true
	s.user = user
	s.stopTimer(tAuth)
	s.info.update(func(i *SessionInfo) { i.User, i.AAA = user, r.aaa })
	r.authName = user
	r.opts.LoggedInUser = ""
	if a := wantedAddr(addrs); a.IsValid() && r.aaa == "file" {
		r.remote = a
	}
	s.beginNetwork()
}

// ---- network (server side) ----

var errNoAddress = errors.New("ppp: no local or remote address")

// networkStart asks the network for the session's addresses before IPCP
// starts, so that the client's 0.0.0.0 can be Nak'd with a real one. The
// secrets line may pin the address; Config.Local overrides the gateway.
func (r *server) networkStart(s *session) error {
	cfg := s.cfg
	want := cfg.Remote
	if r.remote.IsValid() {
		want = r.remote // pinned by the secrets line
	}
	r.dns, r.wins = cfg.DNS, cfg.WINS
	if len(r.authDNS) > 0 {
		r.dns = r.authDNS
	}
	if r.link != nil {
		// LCP was renegotiated: the session keeps its address.
		r.local, r.remote = r.link.Local(), r.link.Remote()
		if len(r.dns) == 0 {
			r.dns = r.link.DNS()
		}
	} else if r.opts.Network != nil {
		deliver := func(pkt []byte) {
			c := make([]byte, len(pkt))
			copy(c, pkt)
			select {
			case s.events <- func() { s.sendIP(c) }:
			default:
				s.stats.Dropped.Add(1)
			}
		}
		link, err := r.opts.Network.Attach(r.ctx, s.id, want, deliver)
		if err != nil {
			return fmt.Errorf("attach: %w", err)
		}
		r.link = link
		r.local, r.remote = link.Local(), link.Remote()
		if len(r.dns) == 0 {
			r.dns = link.DNS()
		}
	} else {
		r.remote = want
	}
	if cfg.Local.IsValid() {
		r.local = cfg.Local
	}
	if !r.local.Is4() || !r.remote.Is4() {
		return errNoAddress
	}
	s.info.update(func(i *SessionInfo) { i.Local, i.Remote, i.DNS = r.local, r.remote, r.dns })
	return nil
}

func (r *server) ipcpRequest(s *session) cp.Options {
	var o cp.Options
	if r.reqVJ {
		o = append(o, ipcp.Compression{Protocol: ipcp.ProtoVJC, MaxSlot: r.vjSlots, CompSlot: 1}.Encode())
	}
	if r.reqAddr {
		o = append(o, ipcp.Address{Type: ipcp.OptAddress, Addr: r.local}.Encode())
	}
	return o
}

// slotAddr returns the n-th (0 or 1) address of a list, the first filling
// both as pppd's ms-dns does; ok=false if the list is empty.
func slotAddr(l []netip.Addr, n int) (netip.Addr, bool) {
	switch {
	case len(l) == 0:
		return netip.Addr{}, false
	case n < len(l):
		return l[n], true
	}
	return l[0], true
}

// ipcpCheck judges the client's IPCP request as pppd's ipcp_reqci does.
func (r *server) ipcpCheck(s *session, opts cp.Options, rejectOnly bool) (cp.Code, cp.Options) {
	var rej, nak cp.Options
	var peerVJ *ipcp.Compression
	for _, o := range opts {
		d, err := ipcp.Decode(o)
		if err != nil {
			rej = append(rej, o)
			continue
		}
		switch v := d.(type) {
		case ipcp.Address:
			var want netip.Addr
			ok := true
			switch v.Type {
			case ipcp.OptAddress:
				want = r.remote
			case ipcp.OptDNS1:
				want, ok = slotAddr(r.dns, 0)
			case ipcp.OptDNS2:
				want, ok = slotAddr(r.dns, 1)
			case ipcp.OptNBNS1:
				want, ok = slotAddr(r.wins, 0)
			case ipcp.OptNBNS2:
				want, ok = slotAddr(r.wins, 1)
			}
			if !ok {
				rej = append(rej, o) // ms-dns / ms-wins unset
			} else if v.Addr != want {
				nak = append(nak, ipcp.Address{Type: v.Type, Addr: want}.Encode())
			}
		case ipcp.Addresses:
			if v.Src != r.remote || v.Dst != r.local {
				nak = append(nak, ipcp.Addresses{Src: r.remote, Dst: r.local}.Encode())
			}
		case ipcp.Compression:
			switch {
			case !s.cfg.VJ || v.Protocol != ipcp.ProtoVJC || len(v.Extra) > 0:
				rej = append(rej, o)
			case v.Old:
				peerVJ = &ipcp.Compression{Protocol: ipcp.ProtoVJC, MaxSlot: 15, CompSlot: 0, Old: true}
			case v.MaxSlot > r.vjSlots:
				// pppd: Nak a Max-Slot-Id above ours with ours.
				nak = append(nak, ipcp.Compression{Protocol: ipcp.ProtoVJC, MaxSlot: r.vjSlots, CompSlot: v.CompSlot}.Encode())
			default:
				c := v
				peerVJ = &c
			}
		default:
			rej = append(rej, o)
		}
	}
	code, reply, ack := verdict(opts, rej, nak, rejectOnly)
	if ack {
		r.peerVJ = peerVJ
	}
	return code, reply
}

// ipcpNak accepts fewer VJ slots; our own address is not negotiable
// (pppd without ipcp-accept-local).
func (r *server) ipcpNak(s *session, opts cp.Options) {
	for _, o := range opts {
		if d, err := ipcp.Decode(o); err == nil {
			if c, ok := d.(ipcp.Compression); ok {
				if c.Protocol != ipcp.ProtoVJC || c.Old {
					r.reqVJ = false
				} else if c.MaxSlot < r.vjSlots {
					r.vjSlots = c.MaxSlot
				}
			}
		}
	}
}

func (r *server) ipcpReject(s *session, opts cp.Options) {
	for _, o := range opts {
		switch o.Type {
		case ipcp.OptCompression:
			r.reqVJ = false
		case ipcp.OptAddress:
			r.reqAddr = false
		}
	}
}

// ipcpUp turns VJ on where negotiated, sets the link's MTU and announces
// the session on the bus.
func (r *server) ipcpUp(s *session) {
	s.startVJ(r.peerVJ, r.reqVJ, r.vjSlots)
	if m, ok := r.link.(MTUSetter); ok && r.link != nil {
		mtu := s.peerMRU
		if s.cfg.MTU > 0 {
			mtu = min(mtu, s.cfg.MTU)
		}
		m.SetMTU(mtu)
	}
	s.log.Info("IPCP up", "local", r.local, "remote", r.remote, "dns", r.dns, "vj", s.vjTx != nil)
	s.info.update(func(i *SessionInfo) { i.Up, i.VJ = s.upAt, s.vjTx != nil || s.vjRx != nil })
	if r.opts.Bus != nil {
		r.opts.Bus.Publish(bus.PPPUp{Session: s.id, Line: r.opts.Line, User: s.user, Local: r.local,
			Remote: r.remote, DNS: slices.Clone(r.dns), CallID: r.opts.CallID, CallerID: r.opts.CallerID})
	}
}

func (r *server) lcpDown(*session) {
	// A failure being answered stays pending: renegotiating LCP must not
	// be a way around it.
	r.authOK, r.lastOK = false, nil
	r.pending = false
}

func (r *server) receiveIP(s *session, pkt []byte) {
	if r.link == nil {
		s.stats.Dropped.Add(1)
		return
	}
	if err := r.link.Send(pkt); err != nil {
		s.stats.Dropped.Add(1)
	}
}

// prereadRW returns pre before reading from the line.
type prereadRW struct {
	io.ReadWriteCloser
	pre []byte
}

func (p *prereadRW) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.ReadWriteCloser.Read(b)
}
