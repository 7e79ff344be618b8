package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/isp-box/isp-box/internal/radius"
)

var radiusKeys = []string{"authserver", "acctserver", "timeout", "retries", "nas-identifier", "nas-ip-address",
	"auth-order", "interim-interval", "require-message-authenticator"}

// radiusSection maps [radius]: the AAA servers (radiusclient.conf's
// authserver/acctserver with the secret of its servers file on the same
// line) and where PPP users are checked.
func (b *builder) radiusSection(s *section, es []entry) {
	r := &b.cfg.Radius
	r.File, r.Line = s.File, s.Line
	var orderAt *entry
	for i, e := range es {
		bad := func(format string, args ...any) {
			b.errorf(e.File, e.Line, "%s: %s", e.Key, fmt.Sprintf(format, args...))
		}
		switch e.Key {
		case "authserver", "acctserver":
			port := 1812
			if e.Key == "acctserver" {
				port = 1813
			}
			srv, err := parseRadiusServer(e.Value, port)
			if err != nil {
				bad("%v", err)
				continue
			}
			if e.Key == "authserver" {
				r.Auth = append(r.Auth, srv)
			} else {
				r.Acct = append(r.Acct, srv)
			}
		case "timeout":
			d, err := parseSeconds(e.Value, 1, 60)
			if err != nil {
				bad("%v", err)
			}
			r.Timeout = d
		case "retries":
			n, err := parseInt(e.Value, 0, 10)
			if err != nil {
				bad("%v", err)
			}
			r.Retries = n
		case "nas-identifier":
			if e.Value == "" || len(e.Value) > 253 {
				bad("%q: 1 to 253 characters", e.Value)
			}
			r.NASIdentifier = e.Value
		case "nas-ip-address":
			a, err := parseAddr4(e.Value)
			if err != nil {
				bad("%v", err)
			}
			r.NASIPAddress = a
		case "auth-order":
			r.Order = nil
			orderAt = &es[i]
			for _, w := range splitList(strings.ToLower(e.Value)) {
				if w != "file" && w != "radius" {
					bad("%q: expected file, radius, or both in the order to ask them (file radius)", w)
					continue
				}
				r.Order = append(r.Order, w)
			}
			if len(r.Order) == 2 && r.Order[0] == "radius" {
				bad("radius before file is not supported: users in [users] are checked first")
			}
		case "interim-interval":
			d, err := parseSeconds(e.Value, 0, 86400)
			if err != nil {
				bad("%v", err)
			}
			if d > 0 && d.Seconds() < 60 {
				// RFC 2869 §5.16: not less than 60 s.
				b.warnf(e.File, e.Line, "interim-interval %s is below RFC 2869's 60 s minimum", e.Value)
			}
			r.InterimInterval = d
		case "require-message-authenticator":
			v, ok := parseBool(e.Value)
			if !ok {
				bad("%q is not %s", e.Value, boolWords)
			}
			r.RequireMA = v
		default:
			b.errorf(e.File, e.Line, "unknown key %q in [radius]%s", e.RawKey, suggest(e.Key, radiusKeys))
		}
	}
	if orderAt != nil && r.Enabled() && len(r.Auth) == 0 {
		b.errorf(orderAt.File, orderAt.Line, "auth-order: radius needs an authserver line in [radius]")
	}
}

// parseRadiusServer reads "host[:port] secret".
func parseRadiusServer(v string, defPort int) (radius.Server, error) {
	f := strings.Fields(v)
	if len(f) != 2 {
		return radius.Server{}, fmt.Errorf("%q: expected host[:port] secret", v)
	}
	host, port := f[0], strconv.Itoa(defPort)
	if h, p, err := net.SplitHostPort(f[0]); err == nil {
		host, port = h, p
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return radius.Server{}, fmt.Errorf("%q: port must be 1..65535", f[0])
		}
	}
	if host == "" {
		return radius.Server{}, fmt.Errorf("%q: no host", f[0])
	}
	return radius.Server{Addr: net.JoinHostPort(host, port), Secret: f[1]}, nil
}
