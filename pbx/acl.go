package pbx

import "net/netip"

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
