package ppp

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/isp-box/isp-box/ppp/chap"
	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/lcp"
	"github.com/isp-box/isp-box/ppp/pap"
)

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
