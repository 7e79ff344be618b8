package ppp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/ipcp"
	"github.com/isp-box/isp-box/ppp/lcp"
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
			PktsIn: rec.PktsIn, PktsOut: rec.PktsOut, Dropped: rec.Dropped, FCSErrors: rec.FCSErrors,
			Cause: rec.Cause, CallID: opts.CallID, CallerID: opts.CallerID})
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
	for d := range decoded(opts, lcp.Decode) {
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
	var peerVJ *ipcp.Compression
	code, reply, ack := judge(opts, rejectOnly, ipcp.Decode, func(d ipcp.Option) (cp.Options, bool) {
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
				return nil, true // ms-dns / ms-wins unset
			}
			if v.Addr != want {
				return cp.Options{ipcp.Address{Type: v.Type, Addr: want}.Encode()}, false
			}
		case ipcp.Addresses:
			if v.Src != r.remote || v.Dst != r.local {
				return cp.Options{ipcp.Addresses{Src: r.remote, Dst: r.local}.Encode()}, false
			}
		case ipcp.Compression:
			switch {
			case !s.cfg.VJ || v.Protocol != ipcp.ProtoVJC || len(v.Extra) > 0:
				return nil, true
			case v.Old:
				peerVJ = &ipcp.Compression{Protocol: ipcp.ProtoVJC, MaxSlot: 15, CompSlot: 0, Old: true}
			case v.MaxSlot > r.vjSlots:
				// pppd: Nak a Max-Slot-Id above ours with ours.
				return cp.Options{ipcp.Compression{Protocol: ipcp.ProtoVJC, MaxSlot: r.vjSlots, CompSlot: v.CompSlot}.Encode()}, false
			default:
				peerVJ = &v
			}
		default:
			return nil, true
		}
		return nil, false
	})
	if ack {
		r.peerVJ = peerVJ
	}
	return code, reply
}

// ipcpNak accepts fewer VJ slots; our own address is not negotiable
// (pppd without ipcp-accept-local).
func (r *server) ipcpNak(s *session, opts cp.Options) {
	for d := range decoded(opts, ipcp.Decode) {
		if c, ok := d.(ipcp.Compression); ok {
			if c.Protocol != ipcp.ProtoVJC || c.Old {
				r.reqVJ = false
			} else if c.MaxSlot < r.vjSlots {
				r.vjSlots = c.MaxSlot
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
