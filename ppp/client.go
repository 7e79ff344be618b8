package ppp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/isp-box/isp-box/ppp/chap"
	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/ipcp"
	"github.com/isp-box/isp-box/ppp/lcp"
	"github.com/isp-box/isp-box/ppp/pap"
)

// ClientConfig configures the dial side.
type ClientConfig struct {
	User, Password string
	// Auth lists the protocols the client accepts to authenticate with,
	// in its order of preference when it must suggest one; empty = all.
	Auth       []AuthProto
	WantVJ     bool       // ask for and accept VJ compression
	VJMaxSlots int        // 16
	AsyncMap   uint32     // the ACCM we ask the server to use
	WantAddr   netip.Addr // address to ask for; zero = 0.0.0.0 (the server chooses)
	NoDNS      bool       // do not ask for DNS addresses (pppd without usepeerdns)

	EchoInterval time.Duration // lcp-echo-interval; 0 = off
	EchoFailure  int           // lcp-echo-failure

	// Windows makes the client behave like Windows 95 Dial-Up Networking:
	// it offers the CBCP callback option, asks for DNS and WINS (129-132)
	// with VJ `0f 00`, and starts IPXCP, NBFCP and CCP after authentication.
	Windows bool

	Clock   Clock         // nil = real
	Restart time.Duration // restart timer; 3 s
}

// Errors of Dial.
var (
	ErrAuthFailed = errors.New("ppp: authentication failed")
	ErrNoIPCP     = errors.New("ppp: link ended before IPCP opened")
)

// Client is an established client session.
type Client struct {
	s    *session
	r    *client
	done chan struct{}
	recv chan []byte

	mu      sync.Mutex
	rejects []uint16 // protocols the server Protocol-Rejected
}

// Dial negotiates a PPP link on rw as a client and returns once IPCP is
// open. ctx bounds the negotiation only. On failure rw is closed.
func Dial(ctx context.Context, rw io.ReadWriteCloser, cfg ClientConfig, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("comp", "ppp-client")
	c := &Client{done: make(chan struct{}), recv: make(chan []byte, 256)}
	slots := cfg.VJMaxSlots
	if slots <= 0 || slots > 256 {
		slots = 16
	}
	scfg := Config{AsyncMap: cfg.AsyncMap, EchoInterval: cfg.EchoInterval, EchoFailure: cfg.EchoFailure,
		VJ: cfg.WantVJ, VJMaxSlots: slots, MRU: lcp.DefaultMRU, Restart: cfg.Restart,
		MaxConfigure: 10, MaxTerminate: 2, MaxFailure: 5, IPCPMaxFailure: 5, AuthTimeout: 30 * time.Second}
	if len(cfg.Auth) == 0 {
		cfg.Auth = []AuthProto{AuthMSCHAPv2, AuthMSCHAP, AuthCHAP, AuthPAP}
	}
	r := &client{cfg: cfg, c: c, ready: make(chan struct{}), vjSlots: uint8(slots - 1),
		ask: askAll, reqCallback: cfg.Windows,
		reqVJ: cfg.WantVJ}
	want, unset := cfg.WantAddr, netip.IPv4Unspecified()
	if !want.IsValid() {
		want = unset
	}
	dns := !cfg.NoDNS || cfg.Windows
	r.addrs = []askAddr{{ipcp.OptAddress, true, want}, {ipcp.OptDNS1, dns, unset},
		{ipcp.OptNBNS1, cfg.Windows, unset}, {ipcp.OptDNS2, dns, unset}, {ipcp.OptNBNS2, cfg.Windows, unset}}
	s := newSession("client", rw, scfg, r, cfg.Clock, log)
	c.s, c.r = s, r
	runCtx, cancelRun := context.WithCancel(context.Background())
	go func() {
		defer close(c.done)
		defer cancelRun()
		s.run(runCtx)
	}()
	select {
	case <-r.ready:
		return c, nil
	case <-c.done:
		if s.cause == CauseAuth {
			return nil, ErrAuthFailed
		}
		return nil, fmt.Errorf("%w: %s", ErrNoIPCP, s.cause)
	case <-ctx.Done():
		cancelRun()
		<-c.done
		return nil, fmt.Errorf("ppp: dial: %w", ctx.Err())
	}
}

// Local is the client's address.
func (c *Client) Local() netip.Addr { return c.r.local }

// Remote is the server's address.
func (c *Client) Remote() netip.Addr { return c.r.remote }

// DNS returns the DNS servers the server gave (129, 131).
func (c *Client) DNS() []netip.Addr { return slices.Clone(c.r.dnsUp) }

// WINS returns the NBNS (WINS) servers the server gave (130, 132).
func (c *Client) WINS() []netip.Addr { return slices.Clone(c.r.winsUp) }

// AuthProto is the protocol the client authenticated with ("" = none).
func (c *Client) AuthProto() AuthProto { return c.r.authUsed }

// VJ reports whether VJ compression is on in each direction.
func (c *Client) VJ() (tx, rx bool) { return c.r.vjTx, c.r.vjRx }

// ProtocolRejects lists the protocols the server Protocol-Rejected.
func (c *Client) ProtocolRejects() []uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.rejects)
}

// Done is closed when the link is down.
func (c *Client) Done() <-chan struct{} { return c.done }

// Cause says why the link ended (valid after Done).
func (c *Client) Cause() string {
	<-c.done
	return c.s.cause
}

// Stats returns IP octets and packets sent and received.
func (c *Client) Stats() (bytesOut, bytesIn, pktsOut, pktsIn uint64) {
	st := &c.s.stats
	return st.BytesOut.Load(), st.BytesIn.Load(), st.PktsOut.Load(), st.PktsIn.Load()
}

// WritePacket sends one IP packet; pkt is not retained.
func (c *Client) WritePacket(pkt []byte) error {
	p := slices.Clone(pkt)
	if !c.do(func() { c.s.sendIP(p) }) {
		return ErrClosed
	}
	return nil
}

// ReadPacket copies the next IP packet from the server into buf.
func (c *Client) ReadPacket(buf []byte) (int, error) {
	select {
	case p := <-c.recv:
		if len(p) > len(buf) {
			return copy(buf, p), io.ErrShortBuffer
		}
		return copy(buf, p), nil
	case <-c.done:
		return 0, ErrClosed
	}
}

// Close sends a Terminate-Request, waits for the Ack (or Max-Terminate
// timeouts), closes rw and waits for the session's goroutines.
func (c *Client) Close() error {
	c.do(func() { c.s.terminate(CauseLocalClose, "User request") })
	<-c.done
	return nil
}

// do hands fn to the session's owner goroutine; false if the link is down.
func (c *Client) do(fn func()) bool {
	select {
	case c.s.events <- fn:
		return true
	case <-c.done:
		return false
	}
}

// client is the dial role's negotiation policy: written apart from the
// server's so that each side is tested against the other.
type client struct {
	cfg   ClientConfig
	c     *Client
	ready chan struct{}

	ask            lcpAsk // which of our LCP options we still request
	reqCallback    bool
	authUsed       AuthProto
	papID          uint8
	papTries       int
	authDone       bool
	peerChallenge  []byte
	expectAuthResp string

	addrs         []askAddr // in request order: ours, DNS1, NBNS1, DNS2, NBNS2
	reqVJ         bool
	vjSlots       uint8
	peerVJ        *ipcp.Compression
	local, remote netip.Addr
	dnsUp, winsUp []netip.Addr
	vjTx, vjRx    bool
	upOnce        bool
}

// askAddr is an address the client requests in IPCP: its own (RFC 1332
// §3.3) or a DNS or NBNS server's (RFC 1877). 0.0.0.0 asks the server to
// Nak with the address to use.
type askAddr struct {
	typ  uint8
	on   bool // still requested (cleared by Reject)
	addr netip.Addr
}

// askFor returns the requested address of option type typ, nil if none.
func (r *client) askFor(typ uint8) *askAddr {
	for i := range r.addrs {
		if r.addrs[i].typ == typ {
			return &r.addrs[i]
		}
	}
	return nil
}

func (r *client) lcpRequest(s *session) cp.Options {
	o := r.ask.appendTo(nil, s)
	if r.reqCallback {
		o = append(o, lcp.Callback{Operation: lcp.CallbackCBCP}.Encode())
	}
	return o
}

func (r *client) accepts(p AuthProto) bool { return slices.Contains(r.cfg.Auth, p) }

// lcpCheck judges the server's LCP request as a dial-up client does: it
// authenticates with any protocol it was configured to accept and
// suggests its first choice otherwise.
func (r *client) lcpCheck(s *session, opts cp.Options, rejectOnly bool) (cp.Code, cp.Options) {
	var auth AuthProto
	code, reply, ack := checkLCP(s, opts, rejectOnly, 0, func(d lcp.Option) (cp.Options, bool) {
		a, isAuth := d.(lcp.Auth)
		if !isAuth {
			return nil, true
		}
		if p, ok := authProtoOf(a); ok && r.accepts(p) {
			auth = p
			return nil, false
		}
		// RFC 1661 §6.2: Nak with the protocol we would rather use.
		return cp.Options{authOption(r.cfg.Auth[0]).Encode()}, false
	})
	if ack {
		r.authUsed = auth
	}
	return code, reply
}

func (r *client) lcpNak(s *session, opts cp.Options) {
	for _, o := range opts {
		switch o.Type {
		case lcp.OptACCM:
			if d, err := lcp.Decode(o); err == nil {
				s.cfg.AsyncMap |= uint32(d.(lcp.ACCM))
			}
		case lcp.OptMagic:
			s.magic = newMagic()
		case lcp.OptCallback:
			r.reqCallback = false
		}
	}
}

func (r *client) lcpReject(s *session, opts cp.Options) {
	for _, o := range opts {
		r.ask.rejected(s, o.Type)
		if o.Type == lcp.OptCallback {
			r.reqCallback = false
		}
	}
}

// authStart authenticates with the protocol agreed in LCP: PAP sends the
// Authenticate-Request (retransmitted like pppd's pap-restart), CHAP waits
// for the server's Challenge.
func (r *client) authStart(s *session) bool {
	s.authProto = r.authUsed
	switch r.authUsed {
	case "":
		return false
	case AuthPAP:
		r.papID = s.lcp.NextID()
		r.sendPAP(s)
	default:
		s.setTimer(tAuth, s.cfg.AuthTimeout)
	}
	return true
}

func (r *client) sendPAP(s *session) {
	r.papTries++
	req := pap.Request{PeerID: r.cfg.User, Password: r.cfg.Password}
	b, err := req.Marshal()
	if err != nil {
		s.closeSoon(CauseAuth, "bad credentials")
		return
	}
	s.sendCP(pap.Protocol, cp.Packet{Code: cp.Code(pap.AuthReq), ID: r.papID, Data: b})
	s.setTimer(tAuth, s.restart())
}

func (r *client) authTimeout(s *session) {
	if r.authDone {
		return
	}
	if r.authUsed == AuthPAP && r.papTries < 10 { // pap-max-authreq
		r.sendPAP(s)
		return
	}
	s.closeSoon(CauseAuth, "Authentication timeout")
}

func (r *client) authDelayed(*session) {}

func (r *client) authInput(s *session, proto uint16, p cp.Packet) {
	switch {
	case proto == pap.Protocol && r.authUsed == AuthPAP && p.ID == r.papID:
		switch p.Code {
		case cp.Code(pap.AuthAck):
			r.authSucceeded(s)
		case cp.Code(pap.AuthNak):
			msg, _ := pap.ParseMessage(p.Data)
			s.log.Warn("PAP authentication failed", "message", string(msg))
			r.authFailed(s)
		}
	case proto == chap.Protocol && r.authUsed != "" && r.authUsed != AuthPAP:
		switch p.Code {
		case cp.Code(chap.Challenge):
			r.chapRespond(s, p)
		case cp.Code(chap.Success):
			msg := string(p.Data)
			if r.authUsed == AuthMSCHAPv2 && !strings.HasPrefix(msg, r.expectAuthResp) {
				// RFC 2759 §5: the server must prove it knows the password.
				s.log.Warn("MS-CHAPv2: bad authenticator response", "got", msg)
				r.authFailed(s)
				return
			}
			r.authSucceeded(s)
		case cp.Code(chap.Failure):
			s.log.Warn("CHAP authentication failed", "message", string(p.Data))
			r.authFailed(s)
		}
	}
}

// chapRespond answers a Challenge with the agreed algorithm. For MS-CHAPv2
// it also computes the authenticator response the server must return.
func (r *client) chapRespond(s *session, p cp.Packet) {
	var ch chap.Value
	if err := ch.Unmarshal(p.Data); err != nil {
		return
	}
	var resp []byte
	switch r.authUsed {
	case AuthCHAP:
		resp = chap.MD5Response(p.ID, r.cfg.Password, ch.Value)
	case AuthMSCHAP:
		if len(ch.Value) != chap.MSv1ChallengeLen {
			return
		}
		resp = chap.MSv1Response(ch.Value, r.cfg.Password)
	case AuthMSCHAPv2:
		if len(ch.Value) != chap.MSv2ChallengeLen {
			return
		}
		r.peerChallenge = make([]byte, 16)
		rand.Read(r.peerChallenge)
		resp = chap.MSv2Response(ch.Value, r.peerChallenge, r.cfg.User, r.cfg.Password)
		r.expectAuthResp = chap.AuthenticatorResponse(r.cfg.Password, resp[24:48], r.peerChallenge, ch.Value, r.cfg.User)
	default: // AuthPAP: the caller never asks
	}
	v := chap.Value{Value: resp, Name: r.cfg.User}
	b, _ := v.Marshal()
	s.sendCP(chap.Protocol, cp.Packet{Code: cp.Code(chap.Response), ID: p.ID, Data: b})
}

func (r *client) authSucceeded(s *session) {
	if r.authDone {
		return
	}
	r.authDone = true
	s.stopTimer(tAuth)
	s.beginNetwork()
}

func (r *client) authFailed(s *session) {
	s.stopTimer(tAuth)
	s.setCause(CauseAuth)
	s.closeSoon(CauseAuth, "Authentication failed")
}

func (r *client) networkStart(s *session) error {
	if r.cfg.Windows {
		// Windows 95 DUN starts every NCP its connectoid allows; the
		// server Protocol-Rejects the ones it does not run.
		s.sendCP(0x802b, cp.Packet{Code: cp.ConfReq, ID: 1, Data: []byte{1, 6, 0, 0, 0, 0, 2, 8, 0, 0, 0, 0, 0, 0}}) // IPXCP
		s.sendCP(0x803f, cp.Packet{Code: cp.ConfReq, ID: 1, Data: []byte{20, 4, 0, 1}})                              // NBFCP
		s.sendCP(0x80fd, cp.Packet{Code: cp.ConfReq, ID: 1, Data: []byte{18, 6, 0, 0, 0, 1}})                        // CCP MPPC
	}
	return nil
}

func (r *client) ipcpRequest(s *session) cp.Options {
	var o cp.Options
	if r.reqVJ {
		comp := uint8(1)
		if r.cfg.Windows {
			comp = 0 // Microsoft clients send `0f 00`
		}
		o = append(o, ipcp.Compression{Protocol: ipcp.ProtoVJC, MaxSlot: r.vjSlots, CompSlot: comp}.Encode())
	}
	for _, a := range r.addrs {
		if a.on {
			o = append(o, ipcp.Address{Type: a.typ, Addr: a.addr}.Encode())
		}
	}
	return o
}

func (r *client) ipcpCheck(s *session, opts cp.Options, rejectOnly bool) (cp.Code, cp.Options) {
	var remote netip.Addr
	var peerVJ *ipcp.Compression
	code, reply, ack := judge(opts, rejectOnly, ipcp.Decode, func(d ipcp.Option) (cp.Options, bool) {
		switch v := d.(type) {
		case ipcp.Address:
			if v.Type != ipcp.OptAddress || v.Addr.IsUnspecified() {
				return nil, true
			}
			remote = v.Addr
		case ipcp.Compression:
			if !r.cfg.WantVJ || v.Protocol != ipcp.ProtoVJC || v.Old || len(v.Extra) > 0 {
				return nil, true
			}
			peerVJ = &v
		default:
			return nil, true
		}
		return nil, false
	})
	if ack {
		r.remote, r.peerVJ = remote, peerVJ
	}
	return code, reply
}

// ipcpNak takes the addresses the server assigns (RFC 1332 §3.3, RFC 1877).
func (r *client) ipcpNak(s *session, opts cp.Options) {
	for d := range decoded(opts, ipcp.Decode) {
		switch v := d.(type) {
		case ipcp.Address:
			if a := r.askFor(v.Type); a != nil {
				a.addr = v.Addr
			}
		case ipcp.Compression:
			if v.Protocol == ipcp.ProtoVJC && !v.Old && v.MaxSlot <= r.vjSlots {
				r.vjSlots = v.MaxSlot
			} else {
				r.reqVJ = false
			}
		}
	}
}

func (r *client) ipcpReject(s *session, opts cp.Options) {
	for _, o := range opts {
		if o.Type == ipcp.OptCompression {
			r.reqVJ = false
		} else if a := r.askFor(o.Type); a != nil {
			a.on = false
		}
	}
}

// ipcpUp records the addresses in force and turns VJ on where negotiated;
// the first time, it lets Dial return.
func (r *client) ipcpUp(s *session) {
	r.local = r.askFor(ipcp.OptAddress).addr
	r.dnsUp, r.winsUp = nil, nil
	for _, a := range r.addrs {
		if !a.on || a.addr.IsUnspecified() {
			continue
		}
		switch a.typ {
		case ipcp.OptDNS1, ipcp.OptDNS2:
			r.dnsUp = append(r.dnsUp, a.addr)
		case ipcp.OptNBNS1, ipcp.OptNBNS2:
			r.winsUp = append(r.winsUp, a.addr)
		}
	}
	s.startVJ(r.peerVJ, r.reqVJ, r.vjSlots)
	r.vjTx, r.vjRx = s.vjTx != nil, s.vjRx != nil
	s.log.Info("IPCP up", "local", r.local, "remote", r.remote, "dns", r.dnsUp)
	if !r.upOnce {
		r.upOnce = true
		close(r.ready)
	}
}

func (r *client) lcpDown(*session) { r.authDone, r.papTries = false, 0 }

func (r *client) receiveIP(s *session, pkt []byte) {
	select {
	case r.c.recv <- pkt:
	default:
		s.stats.Dropped.Add(1)
	}
}

// protocolRejected records a Protocol-Reject from the server.
func (r *client) protocolRejected(proto uint16) {
	r.c.mu.Lock()
	r.c.rejects = append(r.c.rejects, proto)
	r.c.mu.Unlock()
}
