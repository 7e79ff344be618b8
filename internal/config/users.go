package config

import (
	"net/netip"
	"strings"

	"github.com/isp-box/isp-box/ppp"
)

// users reads [users]: pap-secrets lines `client server secret [address
// ...]`, words as pppd's getword reads them. A secret written @FILE is read
// from FILE (its first word), as pppd does.
func (b *builder) users(s *section) {
	for _, r := range s.Raw {
		words, err := pppWords(r.Text)
		if err != nil {
			b.errorf(r.File, r.Line, "%v", err)
			continue
		}
		if len(words) == 0 {
			continue
		}
		if strings.EqualFold(words[0], "any-login") {
			// isp-box's rule for fixed-login clients (DreamPi accepts
			// any PAP login for the Dreamcast).
			for _, a := range words[1:] {
				if !validSecretAddr(a) {
					b.errorf(r.File, r.Line, "any-login: address %q is not *, -, an IPv4 address or a network", a)
					continue
				}
			}
			b.warnf(r.File, r.Line, "any-login: every PAP/CHAP login is accepted whatever its name and password; anyone who can call the box gets online")
			b.cfg.Users = append(b.cfg.Users, ppp.User{Name: "*", Server: "*", Secret: ppp.AnyLogin, Addrs: words[1:], File: r.File, Line: r.Line})
			continue
		}
		if len(words) < 3 {
			b.errorf(r.File, r.Line, "%q: expected client server secret [addresses...], as in pap-secrets", strings.TrimSpace(r.Text))
			continue
		}
		u := ppp.User{Name: words[0], Server: words[1], Secret: words[2], File: r.File, Line: r.Line}
		if strings.HasPrefix(u.Secret, "@") {
			text, err := b.readAside(r.File, u.Secret[1:])
			if err != nil {
				b.errorf(r.File, r.Line, "secret %s: %v", u.Secret, err)
				continue
			}
			w, err := pppWords(strings.SplitN(text, "\n", 2)[0])
			if err != nil || len(w) == 0 {
				b.errorf(r.File, r.Line, "secret %s: the file holds no secret on its first line", u.Secret)
				continue
			}
			u.Secret = w[0]
		}
		ok := true
		for _, a := range words[3:] {
			if !validSecretAddr(a) {
				b.errorf(r.File, r.Line, "address %q is not *, -, an IPv4 address or a network like 192.168.32.0/24 (! in front excludes it)", a)
				ok = false
			}
		}
		if !ok {
			continue
		}
		u.Addrs = words[3:]
		if u.Name == "*" && u.Secret == "" {
			b.warnf(r.File, r.Line, "any user is accepted with an empty password")
		}
		b.cfg.Users = append(b.cfg.Users, u)
	}
}

// validSecretAddr accepts what auth.c's ip_addr_check handles: *, -,
// an address or a network, optionally negated with !.
func validSecretAddr(a string) bool {
	if a == "*" || a == "-" {
		return true
	}
	a = strings.TrimPrefix(a, "!")
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.Is4()
	}
	p, err := netip.ParsePrefix(a)
	return err == nil && p.Addr().Is4()
}
