package pbx

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/status"
)

// Registration is one sip.conf `register =>` line: the box registers
// with a provider as a UAC so that calls to a public number reach it
// (chan_sip's sip_register / transmit_register).
//
//	register => user[:secret[:authuser]]@host[:port][/extension]
type Registration struct {
	User      string
	Secret    string
	AuthUser  string // digest user name; "" = User
	Host      string // a host, an IP, or the name of a peer (its host, port and outboundproxy are used)
	Port      int    // 0 = 5060 (or the peer's)
	Extension string // Contact user: the extension calls from the provider ask for; "" = "s"
	File      string
	Line      int
}

// Registration states as `sip show registry` prints them (chan_sip regstate2str).
const (
	regUnregistered = "Unregistered"
	regRequestSent  = "Request Sent"
	regAuthSent     = "Auth. Sent"
	regRegistered   = "Registered"
	regRejected     = "Rejected"
	regTimeout      = "Timeout"
	regNoAuth       = "No Authentication"
	regFailed       = "Failed"
)

// RegistryInfo is one outbound registration as `isp-box registry` shows it
// (internal/status's).
type RegistryInfo = status.Registration

// Default timers of chan_sip's outbound registration (sip.h).
const (
	defaultRegisterTimeout = 20 * time.Second // registertimeout
	defaultRegisterExpiry  = 120 * time.Second
	expiryGuard            = 15 * time.Second // EXPIRY_GUARD_SECS
	maxRegisterBackoff     = 8                // retries back off up to 8 x registertimeout
)

// trunkState is the Server's outbound registrations.
type trunkState struct {
	mu   sync.Mutex
	regs []*trunkReg // guarded by mu; replaced when Run starts
}

// trunkReg is one registration's live state.
type trunkReg struct {
	cfg Registration

	mu       sync.Mutex // guards the fields below
	state    string
	refresh  time.Duration
	regTime  time.Time
	lastErr  string
	attempts int

	// owned by the registration goroutine
	callID string
	cseq   uint32
	tag    string
	nc     int
	chal   *digestChallenge
	proxy  bool // chal came in a 407
}

func (r *trunkReg) set(state, lastErr string) {
	r.mu.Lock()
	r.state, r.lastErr = state, lastErr
	r.mu.Unlock()
}

// Registry returns the outbound registrations, in config order.
func (s *Server) Registry() []RegistryInfo {
	s.trunks.mu.Lock()
	regs := slices.Clone(s.trunks.regs)
	s.trunks.mu.Unlock()
	out := make([]RegistryInfo, 0, len(regs))
	for _, r := range regs {
		r.mu.Lock()
		port := r.cfg.Port
		if port == 0 {
			port = 5060
		}
		out = append(out, RegistryInfo{
			Host: net.JoinHostPort(r.cfg.Host, strconv.Itoa(port)), Username: r.cfg.User, Extension: r.cfg.Extension,
			Refresh: int(r.refresh / time.Second), State: r.state, RegTime: r.regTime, LastError: r.lastErr, Attempts: r.attempts,
		})
		r.mu.Unlock()
	}
	return out
}

// runTrunks runs every registration until ctx is done, then unregisters
// them (Expires: 0), as chan_sip does at unload.
func (s *Server) runTrunks(ctx context.Context) {
	g := s.general()
	var wg sync.WaitGroup
	s.trunks.mu.Lock()
	s.trunks.regs = nil
	for _, rc := range g.Registrations {
		r := &trunkReg{cfg: rc, state: regUnregistered, callID: newCallID(s.addr.Addr()), tag: newTag(), cseq: 100}
		s.trunks.regs = append(s.trunks.regs, r)
	}
	regs := slices.Clone(s.trunks.regs)
	s.trunks.mu.Unlock()
	for _, r := range regs {
		wg.Add(1)
		go func() { defer wg.Done(); s.registerLoop(ctx, r) }()
	}
	wg.Wait()
}

// registerLoop registers, refreshes before expiry, and retries with
// back-off after a failure (registertimeout, doubling to 8 times it).
func (s *Server) registerLoop(ctx context.Context, r *trunkReg) {
	g := s.general()
	timeout := g.RegisterTimeout
	if timeout <= 0 {
		timeout = defaultRegisterTimeout
	}
	failures := 0
	for {
		granted, err := s.register(ctx, r, g.DefaultExpiry)
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			r.mu.Lock()
			r.attempts = failures
			r.mu.Unlock()
			if g.RegisterAttempts > 0 && failures >= g.RegisterAttempts {
				s.log.Warn("registration failed; giving up after registerattempts", "host", r.cfg.Host, "user", r.cfg.User, "attempts", failures, "err", err)
				r.set(regFailed, err.Error())
				<-ctx.Done()
				break
			}
			wait = timeout * time.Duration(1<<min(failures-1, 3))
			s.log.Warn("registration failed; retrying", "host", r.cfg.Host, "user", r.cfg.User, "in", wait, "err", err)
		} else {
			if failures > 0 {
				s.log.Info("registered again", "host", r.cfg.Host, "user", r.cfg.User, "after", failures)
			}
			failures = 0
			r.mu.Lock()
			r.attempts = 0
			r.mu.Unlock()
			// chan_sip: refresh EXPIRY_GUARD_SECS before expiry, or at
			// 80 % of a short one.
			wait = granted - expiryGuard
			if granted < 2*expiryGuard {
				wait = granted * 4 / 5
			}
			wait = max(wait, 500*time.Millisecond)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			continue
		}
		break
	}
	r.mu.Lock()
	registered := r.state == regRegistered
	r.mu.Unlock()
	if registered {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		s.register(uctx, r, 0)
		cancel()
	}
}

// trunkDest is where REGISTERs and calls to the provider go: the
// registration's host, or the peer it names; an outboundproxy wins.
func (s *Server) trunkDest(ctx context.Context, r Registration) (dest netip.AddrPort, domain string, err error) {
	host, port, proxy := r.Host, r.Port, ""
	s.mu.Lock()
	if p := s.peers[r.Host]; p != nil && p.cfg.Host != "" && p.cfg.Host != "dynamic" {
		host, proxy = p.cfg.Host, p.cfg.OutboundProxy
		if h, pt, err := net.SplitHostPort(host); err == nil {
			host, port = h, atoiOr(pt, 0)
		} else if port == 0 {
			port = p.cfg.Port
		}
		if p.cfg.FromDomain != "" {
			domain = p.cfg.FromDomain
		}
	}
	s.mu.Unlock()
	if port == 0 {
		port = 5060
	}
	if domain == "" {
		domain = host
		if port != 5060 {
			domain = net.JoinHostPort(host, strconv.Itoa(port))
		}
	}
	target := net.JoinHostPort(host, strconv.Itoa(port))
	if proxy != "" {
		target = proxy
		if _, _, err := net.SplitHostPort(proxy); err != nil {
			target = net.JoinHostPort(proxy, "5060")
		}
	}
	ap, err := resolveUDP(ctx, target)
	return ap, domain, err
}

// resolveUDP resolves host:port to one IPv4 (else IPv6) address.
func resolveUDP(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", hostport)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", h, err)
	}
	slices.SortStableFunc(addrs, func(a, b netip.Addr) int {
		if a.Unmap().Is4() == b.Unmap().Is4() {
			return 0
		}
		if a.Unmap().Is4() {
			return -1
		}
		return 1
	})
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(port)), nil
}

// register sends one REGISTER transaction (answering one digest
// challenge) asking for expires; it returns the expiry granted.
func (s *Server) register(ctx context.Context, r *trunkReg, expires time.Duration) (time.Duration, error) {
	dest, domain, err := s.trunkDest(ctx, r.cfg)
	if err != nil {
		r.set(regFailed, err.Error())
		return 0, err
	}
	ext := r.cfg.Extension
	if ext == "" {
		ext = "s"
	}
	authUser := r.cfg.AuthUser
	if authUser == "" {
		authUser = r.cfg.User
	}
	uri := "sip:" + domain
	build := func() *sip.Request {
		var ru sip.Uri
		sip.ParseUri(uri, &ru)
		req := sip.NewRequest(sip.REGISTER, ru)
		req.AppendHeader(s.newVia(dest))
		mf := sip.MaxForwardsHeader(70)
		req.AppendHeader(&mf)
		aor := sip.Uri{Scheme: "sip", User: r.cfg.User, Host: ru.Host, Port: ru.Port}
		from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
		from.Params.Add("tag", r.tag)
		req.AppendHeader(from)
		req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
		cid := sip.CallIDHeader(r.callID)
		req.AppendHeader(&cid)
		r.cseq++
		req.AppendHeader(&sip.CSeqHeader{SeqNo: r.cseq, MethodName: sip.REGISTER})
		req.AppendHeader(s.contactFor(ext, dest))
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
		if r.chal != nil {
			r.nc++
			h := "Authorization"
			if r.proxy {
				h = "Proxy-Authorization"
			}
			req.AppendHeader(sip.NewHeader(h, r.chal.authorization(authUser, r.cfg.Secret, "REGISTER", uri, r.nc)))
		}
		s.finishRequest(req, dest, nil, "")
		return req
	}
	state := regRequestSent
	if r.chal != nil {
		state = regAuthSent
	}
	r.set(state, "")
	challenged := false
	for range 3 {
		res, err := s.trunkRoundTrip(ctx, build())
		if err != nil {
			r.set(regTimeout, err.Error())
			return 0, fmt.Errorf("REGISTER to %s: %w", dest, err)
		}
		switch {
		case res.StatusCode == 401 || res.StatusCode == 407:
			hdr := "WWW-Authenticate"
			if res.StatusCode == 407 {
				hdr = "Proxy-Authenticate"
			}
			var vals []string
			for _, h := range res.GetHeaders(hdr) {
				vals = append(vals, h.Value())
			}
			c, err := pickChallenge(vals)
			if err != nil {
				r.set(regNoAuth, err.Error())
				return 0, err
			}
			// A second challenge in a row that is not "stale" means the
			// credentials are wrong (RFC 2617 §3.2.1).
			if challenged && !c.Stale {
				r.set(regRejected, fmt.Sprintf("%d %s: wrong user or secret", res.StatusCode, res.Reason))
				r.chal = nil
				return 0, fmt.Errorf("%d %s: credentials refused", res.StatusCode, res.Reason)
			}
			if r.cfg.Secret == "" {
				r.set(regNoAuth, "challenged, but no secret configured")
				return 0, fmt.Errorf("%d %s: no secret to answer with", res.StatusCode, res.Reason)
			}
			challenged = true
			r.chal, r.proxy, r.nc = &c, res.StatusCode == 407, 0
			r.set(regAuthSent, "")
			continue
		case res.StatusCode == 423:
			// RFC 3261 §10.3 step 7: ask again with at least Min-Expires.
			if h := res.GetHeader("Min-Expires"); h != nil {
				if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && time.Duration(n)*time.Second > expires {
					expires = time.Duration(n) * time.Second
					continue
				}
			}
			r.set(regRejected, "423 without a usable Min-Expires")
			return 0, fmt.Errorf("423 Interval Too Brief")
		case res.StatusCode >= 200 && res.StatusCode < 300:
			if expires == 0 {
				r.mu.Lock()
				r.state, r.refresh = regUnregistered, 0
				r.mu.Unlock()
				return 0, nil
			}
			granted := grantedExpiry(res, s.contactFor(ext, dest), expires)
			now := s.now()
			r.mu.Lock()
			was := r.state
			r.state, r.refresh, r.regTime, r.lastErr = regRegistered, granted, now, ""
			r.mu.Unlock()
			if was != regRegistered {
				alg := "none"
				if r.chal != nil {
					alg = r.chal.Algorithm
				}
				s.log.Info("registered with provider", "host", dest, "user", r.cfg.User, "expires", granted, "digest", alg)
				s.publish(bus.Notice{Source: "pbx", Text: fmt.Sprintf("Registered SIP '%s' at %s", r.cfg.User, dest)})
			}
			return granted, nil
		default:
			r.set(regRejected, fmt.Sprintf("%d %s", res.StatusCode, res.Reason))
			r.chal = nil
			return 0, fmt.Errorf("%d %s", res.StatusCode, res.Reason)
		}
	}
	r.set(regRejected, "too many challenges")
	return 0, fmt.Errorf("too many challenges")
}

// grantedExpiry reads the expiry the registrar granted (RFC 3261 §10.2.4):
// our Contact's expires parameter, else the Expires header, else ours.
func grantedExpiry(res *sip.Response, ours *sip.ContactHeader, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		if c.Address.User == ours.Address.User && c.Address.Port == ours.Address.Port && c.Address.Host == ours.Address.Host {
			if v, ok := c.Params.Get("expires"); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					return time.Duration(n) * time.Second
				}
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// trunkRoundTrip is roundTrip bounded by ctx (the registration's own).
func (s *Server) trunkRoundTrip(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 64*sip.T1)
	defer cancel()
	tx, err := s.cli.TransactionRequest(ctx, req, noBuild)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, fmt.Errorf("no answer: %w", err)
			}
			return nil, fmt.Errorf("no answer")
		case <-ctx.Done():
			return nil, fmt.Errorf("no answer: %w", ctx.Err())
		}
	}
}

// trunkBySourceLocked finds the provider peer an out-of-dialog request
// came from: chan_sip matches type=peer by source address, and by address
// alone (any port) with insecure=port. The caller holds s.mu.
func (s *Server) trunkBySourceLocked(src netip.AddrPort) *peer {
	var names []string
	for n := range s.peers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := s.peers[n]
		if p.cfg.Type == "user" || p.cfg.Host == "" || p.cfg.Host == "dynamic" {
			continue
		}
		dest, _, ok := s.peerDestLocked(p)
		if !ok || dest.Addr() != src.Addr() {
			continue
		}
		if dest.Port() == src.Port() || strings.Contains(p.cfg.Insecure, "port") {
			return p
		}
	}
	return nil
}

// viaProxyLocked is peerDestLocked for a peer with a fixed host and an
// outboundproxy given as an address: requests go to the proxy, the
// Request-URI still names the peer's host (RFC 3261 §8.1.2).
func (s *Server) viaProxyLocked(p *peer) (netip.AddrPort, string, bool) {
	if p.cfg.OutboundProxy == "" || p.cfg.Host == "" || p.cfg.Host == "dynamic" {
		return netip.AddrPort{}, "", false
	}
	proxy, err := netip.ParseAddrPort(p.cfg.OutboundProxy)
	if err != nil {
		a, err := netip.ParseAddr(p.cfg.OutboundProxy)
		if err != nil {
			return netip.AddrPort{}, "", false // a host name: resolved when registering only
		}
		proxy = netip.AddrPortFrom(a, 5060)
	}
	host := p.cfg.Host
	if _, _, err := net.SplitHostPort(host); err != nil && p.cfg.Port != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(p.cfg.Port))
	}
	return proxy, "sip:" + p.cfg.Name + "@" + host, true
}
