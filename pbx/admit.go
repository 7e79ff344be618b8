package pbx

import (
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

// replyFunc answers the request being admitted: statelessly at the entry,
// through its transaction in a handler.
type replyFunc func(code int, reason string, hdrs ...sip.Header)

// authResult is what authenticate decided.
type authResult uint8

const (
	authOK   authResult = iota
	authSent            // a response (401/403/404) was sent; stop
)

// admit decides whether a new REGISTER or INVITE from src may go on, in
// chan_sip's order for both: the ACL, then alwaysauthreject, then the
// digest (check_user_full / register_verify, check_auth,
// transmit_fake_auth_response). It returns the peer the request is from.
//
// It runs twice for a request that gets in: statelessly at the entry
// (final false), where every refusal is answered without a transaction
// and a good answer leaves its nonce unused, then in the handler (final
// true), which consumes the nonce. A retransmission of an admitted
// request therefore still reaches its transaction.
func (s *Server) admit(req *sip.Request, src netip.AddrPort, final bool, reply replyFunc) (*Peer, bool) {
	method := req.Method
	s.mu.Lock()
	g := s.cfg.General
	name := req.From().Address.User
	exclude := "peer" // chan_sip: type=peer is never matched by From for a call
	if method == sip.REGISTER {
		name, exclude = req.To().Address.User, "user"
	}
	var pc *Peer
	knownAddr := false
	if p := s.peers[name]; p != nil {
		if dest, _, ok := s.peerDestLocked(p); ok && dest.Addr() == src.Addr() {
			knownAddr = true
		}
		if p.binding != nil && p.binding.Source.Addr() == src.Addr() {
			knownAddr = true
		}
		if p.cfg.Type != exclude {
			c := p.cfg
			pc = &c
		}
	}
	if pc == nil && method != sip.REGISTER {
		// A provider's INVITE names the caller, not a peer: match the
		// trunk peer by source address (trunk.go).
		if p := s.trunkBySourceLocked(src); p != nil {
			c := p.cfg
			pc, knownAddr, name = &c, true, p.cfg.Name
		}
	}
	s.mu.Unlock()
	if s.aclDenied(req, reply, name, src, g, pc) {
		return nil, false
	}
	noSecret := pc != nil && pc.Secret == "" && pc.MD5Secret == ""
	if method == sip.INVITE {
		// Nothing reaches the dial plan unauthenticated. insecure=invite and
		// an empty secret are honoured only from the peer's own address,
		// since chan_sip matched such peers by IP, never by the From header alone.
		if pc != nil && knownAddr && (strings.Contains(pc.Insecure, "invite") || noSecret) {
			return pc, true
		}
		if noSecret {
			pc = nil // no secret and not from its address: treat as unknown
		}
	} else if noSecret {
		return pc, true // chan_sip: "Always OK if no secret"
	}
	if s.authenticate(req, name, pc, src, final, knownAddr, reply) != authOK {
		return nil, false
	}
	return pc, true
}

// authenticate checks the digest of a request claiming to be peer name p
// (nil when unknown; alwaysauthreject makes that look exactly like a known
// peer with a wrong password: same codes, same headers). home is whether
// src is where the peer is: only guesses from elsewhere are rate-limited
// per name, so a guesser never locks the real device out.
func (s *Server) authenticate(req *sip.Request, name string, p *Peer, src netip.AddrPort, final, home bool, reply replyFunc) authResult {
	gen := s.general()
	method := string(req.Method)
	realm := gen.Realm
	now := s.now()
	sendChallenge := func(stale bool) authResult {
		reply(401, "Unauthorized", sip.NewHeader("WWW-Authenticate", challenge(realm, s.nonces.issue(now, src), stale)))
		return authSent
	}
	if p == nil && !gen.AlwaysAuthReject {
		s.authFailed(src, name, method, "no such peer", false)
		reply(404, "Not found")
		return authSent
	}
	h := req.GetHeader("Authorization")
	if h == nil {
		return sendChallenge(false)
	}
	cred, err := parseCredentials(h.Value())
	if err != nil || !strings.EqualFold(cred.Realm, realm) {
		return sendChallenge(false)
	}
	ns := s.nonces.check(cred.Nonce, src, now)
	if ns == nonceFresh && !final && !home && !s.guessLimit.allow(nameKey(name), now) {
		// Too many guesses at this name lately: this one is not even
		// looked at, and the answer does not say so (a new challenge).
		s.edge.throttled.Add(1)
		return sendChallenge(false)
	}
	if p == nil { // fake auth: we cannot know a right answer
		if ns != nonceFresh || !s.nonces.consume(cred.Nonce, now) {
			return sendChallenge(false)
		}
		s.authFailed(src, name, method, "no such peer", true)
		reply(403, "Forbidden")
		return authSent
	}
	ha1 := p.MD5Secret
	if ha1 == "" {
		ha1 = md5hex(name + ":" + realm + ":" + p.Secret)
	}
	good := cred.Username == name && digestResponse(strings.ToLower(ha1), method, cred) == cred.Response
	switch ns {
	case nonceBad:
		return sendChallenge(false)
	case nonceUsed:
		if good && !final {
			return authOK // a retransmission: its transaction answers it
		}
		return sendChallenge(good) // stale=true only for right credentials on our stale nonce
	case nonceStale:
		return sendChallenge(good)
	default: // nonceFresh: below
	}
	if !good {
		if !s.nonces.consume(cred.Nonce, now) {
			return sendChallenge(false)
		}
		reason := "wrong password"
		if cred.Username != name {
			reason = "username mismatch"
		}
		s.authFailed(src, name, method, reason, true)
		reply(403, "Forbidden")
		return authSent
	}
	if final && !s.nonces.consume(cred.Nonce, now) {
		return sendChallenge(true)
	}
	return authOK
}

// authFailed counts a failure from src. proven is whether src is real:
// the request answered a challenge sent there (a nonce is bound to the
// address:port it went to). Only proven failures count toward a ban, so a
// forged source can never get the address it forges banned; and a ban
// never stops the address:port a peer is registered from (the entry
// exempts it).
func (s *Server) authFailed(src netip.AddrPort, user, method, reason string, proven bool) {
	s.counters.authFail.Add(1)
	s.publish(bus.AuthFailed{Source: src, User: user, Method: method, Reason: reason})
	s.log.Warn("authentication failed", "src", src, "user", user, "method", method, "reason", reason)
	if !proven {
		return
	}
	now := s.now()
	s.mu.Lock()
	f := s.fails[src.Addr()]
	if f == nil || now.Sub(f.first) > s.cfg.General.BanTime {
		if f == nil && len(s.fails) >= maxFailSources {
			s.pruneFailsLocked(now)
		}
		f = &failures{first: now}
		s.fails[src.Addr()] = f
	}
	f.n++
	var ban time.Time
	if f.n >= s.cfg.General.MaxAuthFailures {
		ban = now.Add(s.cfg.General.BanTime)
		s.bans[src.Addr()] = ban
		delete(s.fails, src.Addr())
	}
	s.mu.Unlock()
	if !ban.IsZero() {
		s.log.Warn("source banned", "addr", src.Addr(), "until", ban)
		s.publish(bus.SourceBanned{Addr: src.Addr(), Until: ban})
	}
}

// maxFailSources bounds the failure counters; every entry there answered
// a challenge from its own address, so this is many real hosts.
const maxFailSources = 16384

func (s *Server) pruneFailsLocked(now time.Time) {
	for a, f := range s.fails {
		if now.Sub(f.first) > s.cfg.General.BanTime {
			delete(s.fails, a)
		}
	}
	for a, until := range s.bans {
		if !now.Before(until) {
			delete(s.bans, a)
		}
	}
	if len(s.fails) >= maxFailSources {
		clear(s.fails) // still full of live counters: start over rather than grow
	}
}

// Bans lists the banned addresses and until when.
func (s *Server) Bans() map[netip.Addr]time.Time {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Addr]time.Time, len(s.bans))
	for a, t := range s.bans {
		if now.Before(t) {
			out[a] = t
		}
	}
	return out
}

// Unban lifts the ban on a and forgets its failures; false if it was not
// banned.
func (s *Server) Unban(a netip.Addr) bool {
	a = a.Unmap()
	now := s.now()
	s.mu.Lock()
	until, ok := s.bans[a]
	delete(s.bans, a)
	delete(s.fails, a)
	s.mu.Unlock()
	if ok && now.Before(until) {
		s.log.Info("ban lifted", "addr", a)
		return true
	}
	return false
}
