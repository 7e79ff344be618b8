package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/isp-box/isp-box/pbx"
)

// trunkGeneral maps [general]'s outbound registration keys.
func (b *builder) trunkGeneral(e *entry) {
	g := &b.cfg.PBX.General
	switch e.Key {
	case "register":
		r, err := parseRegister(e.Value)
		if err != "" {
			b.errorf(e.File, e.Line, "register => %s", err)
			return
		}
		r.File, r.Line = e.File, e.Line
		g.Registrations = append(g.Registrations, r)
	case "registertimeout":
		d, err := parseSeconds(e.Value, 1, 3600)
		if err != nil {
			b.errorf(e.File, e.Line, "registertimeout: %v", err)
		}
		g.RegisterTimeout = d
	case "registerattempts":
		n, err := parseInt(e.Value, 0, 1000000)
		if err != nil {
			b.errorf(e.File, e.Line, "registerattempts: %v", err)
		}
		g.RegisterAttempts = n
	}
}

// parseRegister reads chan_sip's
//
//	register => [transport://]user[:secret[:authuser]]@host[:port][/extension]
//
// (sip_register in chan_sip.c). The user may itself hold an '@' (a
// provider's user@domain): the host is after the last '@'.
func parseRegister(v string) (pbx.Registration, string) {
	var r pbx.Registration
	const want = "expected user[:secret[:authuser]]@host[:port][/extension]"
	if t, rest, ok := strings.Cut(v, "://"); ok {
		if !strings.EqualFold(t, "udp") {
			return r, "transport " + strconv.Quote(t) + ": only udp"
		}
		v = rest
	}
	at := strings.LastIndexByte(v, '@')
	if at <= 0 {
		return r, strconv.Quote(v) + ": " + want
	}
	creds, hostPart := v[:at], v[at+1:]
	if i := strings.IndexByte(hostPart, '/'); i >= 0 {
		r.Extension = hostPart[i+1:]
		hostPart = hostPart[:i]
		if r.Extension == "" {
			return r, strconv.Quote(v) + ": empty extension after /"
		}
	}
	if strings.ContainsRune(hostPart, '~') {
		return r, strconv.Quote(v) + ": ~expiry is not supported; the box asks for defaultexpiry"
	}
	if h, p, err := net.SplitHostPort(hostPart); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return r, strconv.Quote(v) + ": port must be 1..65535"
		}
		hostPart, r.Port = h, n
	}
	if hostPart == "" || strings.ContainsAny(hostPart, " :;") {
		return r, strconv.Quote(v) + ": bad host"
	}
	r.Host = hostPart
	parts := strings.SplitN(creds, ":", 3)
	r.User = parts[0]
	if len(parts) > 1 {
		r.Secret = parts[1]
	}
	if len(parts) > 2 {
		r.AuthUser = parts[2]
	}
	if r.User == "" {
		return r, strconv.Quote(v) + ": empty user; " + want
	}
	return r, ""
}

// trunkPeer maps a provider peer's fromuser, fromdomain and outboundproxy.
func (b *builder) trunkPeer(p *pbx.Peer, e entry) {
	switch e.Key {
	case "fromuser":
		p.FromUser = e.Value
	case "fromdomain":
		p.FromDomain = e.Value
	case "outboundproxy":
		v := e.Value
		if v == "" {
			b.errorf(e.File, e.Line, "outboundproxy: empty")
			return
		}
		host := v
		if h, port, err := net.SplitHostPort(v); err == nil {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				b.errorf(e.File, e.Line, "outboundproxy: %q: port must be 1..65535", v)
				return
			}
			host = h
		}
		if _, err := netip.ParseAddr(host); err != nil && strings.ContainsAny(host, " ;/@") {
			b.errorf(e.File, e.Line, "outboundproxy: %q is not host[:port]", v)
			return
		}
		p.OutboundProxy = v
	}
}
