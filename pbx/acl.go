package pbx

import (
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/isp-box/isp-box/internal/bus"
)

// aclAllows applies permit/deny rules as chan_sip's ast_apply_ha: every
// rule is tried in order and the last one that matches decides; with no
// match the address is allowed.
func aclAllows(rules []ACLRule, a netip.Addr) bool {
	a = a.Unmap()
	ok := true
	for _, r := range rules {
		if r.Prefix.Contains(a) {
			ok = r.Permit
		}
	}
	return ok
}

// generalACL returns the box-wide rules: ACL when given, else Deny then
// Permit (the order chan_sip's examples use).
func generalACL(g General) []ACLRule {
	if len(g.ACL) > 0 {
		return g.ACL
	}
	var out []ACLRule
	for _, p := range g.Deny {
		out = append(out, ACLRule{Permit: false, Prefix: p})
	}
	for _, p := range g.Permit {
		out = append(out, ACLRule{Permit: true, Prefix: p})
	}
	return out
}

// aclDenied answers and logs a request whose source the box-wide or the
// peer's permit/deny rules refuse, and reports whether it did. The answer
// is what an unknown user gets (chan_sip's AUTH_ACL_FAILED: a fake
// challenge under alwaysauthreject, else 403), so the wire does not tell
// a scanner which names exist; the log says it was the ACL, so an admin
// does not chase a wrong password. A denial is not an authentication
// failure: it does not count towards a ban (the ACL already keeps the
// source out).
func (s *Server) aclDenied(req *sip.Request, reply replyFunc, name string, src netip.AddrPort, g General, pc *Peer) bool {
	which := ""
	switch {
	case !aclAllows(generalACL(g), src.Addr()):
		which = "[general] permit/deny"
	case pc != nil && !aclAllows(pc.ACL, src.Addr()):
		which = "peer [" + pc.Name + "] permit/deny"
	default:
		return false
	}
	s.publish(bus.AuthFailed{Source: src, User: name, Method: string(req.Method), Reason: "ACL: " + which})
	s.log.Warn("ACL denied", "src", src, "user", name, "method", string(req.Method), "acl", which)
	if !g.AlwaysAuthReject {
		reply(403, "Forbidden")
		return true
	}
	now := s.now()
	h := req.GetHeader("Authorization")
	if h != nil {
		if cred, err := parseCredentials(h.Value()); err == nil && strings.EqualFold(cred.Realm, g.Realm) &&
			s.nonces.check(cred.Nonce, src, now) == nonceFresh && s.nonces.consume(cred.Nonce, now) {
			reply(403, "Forbidden")
			return true
		}
	}
	reply(401, "Unauthorized", sip.NewHeader("WWW-Authenticate", challenge(g.Realm, s.nonces.issue(now, src), false)))
	return true
}
