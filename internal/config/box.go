package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/isp-box/isp-box/netstack"
)

var boxKeys = []string{"console", "database", "log-level", "network", "lock-dir", "memory-limit", "metrics"}

// box maps [box]: the settings that are the box's own.
func (b *builder) box(s *section, es []entry) {
	b.cfg.Box.File, b.cfg.Box.Line = s.File, s.Line
	for _, e := range es {
		bad := func(format string, args ...any) {
			b.errorf(e.File, e.Line, "%s: %s", e.Key, fmt.Sprintf(format, args...))
		}
		switch e.Key {
		case "console":
			if e.Value == "" {
				bad("empty path")
			}
			b.cfg.Box.Console = e.Value
		case "database":
			if e.Value == "" {
				bad("empty path")
			}
			b.cfg.Box.Database = e.Value
		case "log-level":
			switch strings.ToLower(e.Value) {
			case "debug":
				b.cfg.Box.LogLevel = slog.LevelDebug
			case "info":
				b.cfg.Box.LogLevel = slog.LevelInfo
			case "warn", "warning":
				b.cfg.Box.LogLevel = slog.LevelWarn
			case "error":
				b.cfg.Box.LogLevel = slog.LevelError
			default:
				bad("%q is not debug, info, warn or error", e.Value)
			}
		case "network":
			b.setMode(e)
		case "memory-limit":
			n, err := parseMiB(e.Value)
			if err != nil {
				bad("%v", err)
				continue
			}
			b.cfg.Box.MemoryLimit = n
		case "metrics":
			// Opt-in, read-only; a bare port listens on loopback only.
			v := e.Value
			if isDigits(v) {
				v = "127.0.0.1:" + v
			}
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				bad("%q is not a port or address:port (a bare port listens on 127.0.0.1)", e.Value)
				continue
			}
			b.cfg.Box.Metrics = ap
		case "lock-dir":
			if !strings.HasPrefix(e.Value, "/") {
				bad("%q is not an absolute directory", e.Value)
			}
			b.lines.lockDir = e.Value
		default:
			b.errorf(e.File, e.Line, "unknown key %q in [box]%s", e.RawKey, suggest(e.Key, boxKeys))
		}
	}
}

var networkKeys = []string{"mode", "gateway", "pool", "dns", "isolate", "mtu", "uplink", "tun", "table",
	"host-loopback", "block-private", "block-host", "allow", "dns-upstream", "hosts-file", "udp-timeout",
	"tcp-timeout", "max-flows", "max-session-flows"}

// networkSection maps [network] onto netstack.Config.
func (b *builder) networkSection(s *section, es []entry) {
	n := &b.cfg.Net
	b.network = s
	for _, e := range es {
		bad := func(format string, args ...any) {
			b.errorf(e.File, e.Line, "%s: %s", e.Key, fmt.Sprintf(format, args...))
		}
		switch e.Key {
		case "mode":
			b.setMode(e)
		case "gateway":
			a, err := parseAddr4(e.Value)
			if err != nil {
				bad("%v", err)
			}
			n.Gateway = a
		case "pool":
			p, err := parsePrefix(e.Value)
			if err != nil {
				bad("%v", err)
				continue
			}
			if !p.Addr().Is4() || p.Bits() > 30 {
				bad("%q: the pool must be an IPv4 network of at least 4 addresses (/30 or larger)", e.Value)
				continue
			}
			n.Pool = p
		case "dns":
			n.DNS = nil
			for _, w := range splitList(e.Value) {
				a, err := parseAddr4(w)
				if err != nil {
					bad("%v", err)
					continue
				}
				n.DNS = append(n.DNS, a)
			}
		case "isolate", "host-loopback", "block-private", "block-host":
			v, ok := parseBool(e.Value)
			if !ok {
				bad("%q is not %s", e.Value, boolWords)
			}
			switch e.Key {
			case "isolate":
				n.Isolate = v
			case "host-loopback":
				n.HostLoopback = v
			case "block-host":
				n.BlockHost = v
			default:
				n.BlockPrivate = v
			}
		case "dns-upstream":
			n.DNSUpstream = nil
			for _, w := range splitList(e.Value) {
				ap, err := netip.ParseAddrPort(w)
				if err != nil {
					a, err2 := netip.ParseAddr(w)
					if err2 != nil {
						bad("%q is not an address or address:port", w)
						continue
					}
					ap = netip.AddrPortFrom(a, 53)
				}
				n.DNSUpstream = append(n.DNSUpstream, ap)
			}
		case "hosts-file":
			if e.Value == "" {
				bad("empty; use - for none")
			}
			n.HostsFile = e.Value
		case "udp-timeout":
			d, err := parseSeconds(e.Value, 1, 86400)
			if err != nil {
				bad("%v", err)
			}
			n.UDPTimeout = d
		case "tcp-timeout":
			d, err := parseSeconds(e.Value, 10, 7*86400)
			if err != nil {
				bad("%v", err)
			}
			n.TCPTimeout = d
		case "max-flows", "max-session-flows":
			v, err := parseInt(e.Value, 1, 1<<20)
			if err != nil {
				bad("%v", err)
			}
			if e.Key == "max-flows" {
				n.MaxFlows = v
			} else {
				n.MaxSessionFlows = v
			}
		case "allow":
			n.Allow = nil
			for _, w := range splitList(e.Value) {
				p, err := parsePrefix(w)
				if err != nil {
					a, err2 := parseAddr4(w)
					if err2 != nil {
						bad("%q is not an IPv4 address or network", w)
						continue
					}
					p = netip.PrefixFrom(a, 32)
				}
				if !p.Addr().Is4() {
					bad("%q is not an IPv4 network", w)
					continue
				}
				n.Allow = append(n.Allow, p.Masked())
			}
		case "mtu":
			v, err := parseInt(e.Value, 128, 16384)
			if err != nil {
				bad("%v", err)
			}
			n.MTU = v
		case "uplink":
			n.Uplink = e.Value
		case "tun":
			if e.Value == "" || len(e.Value) > 15 || strings.ContainsAny(e.Value, " /") {
				bad("%q is not an interface name (1-15 characters, no spaces or /)", e.Value)
			}
			n.TunName = e.Value
		case "table":
			if e.Value == "" {
				bad("empty table name")
			}
			n.Table = e.Value
		default:
			b.errorf(e.File, e.Line, "unknown key %q in [network]%s", e.RawKey, suggest(e.Key, networkKeys))
		}
	}
	if n.Pool.IsValid() && n.Gateway.IsValid() && !n.Pool.Contains(n.Gateway) {
		b.errorf(s.File, s.Line, "[network]: gateway %s is outside the pool %s; the gateway must be inside it", n.Gateway, n.Pool)
	}
}

// setMode sets the network mode from [box] network= or [network] mode=.
func (b *builder) setMode(e entry) {
	switch m := netstack.Mode(strings.ToLower(e.Value)); m {
	case netstack.Userspace, netstack.Kernel:
		b.cfg.Net.Mode = m
	default:
		b.errorf(e.File, e.Line, "%s: %q is not userspace or kernel", e.Key, e.Value)
	}
}

// inPool reports whether a is a usable host address of p (not the
// network or broadcast address).
func inPool(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) || a == p.Addr() {
		return false
	}
	if a.Is4() && p.Bits() < 31 {
		b := p.Addr().As4()
		host := uint32(1)<<(32-p.Bits()) - 1
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v |= host
		bc := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		return a != bc
	}
	return true
}

// DefaultMemoryLimit is memory-limit when [box] does not set it: room for
// the box's working set on a 512 MB Raspberry Pi with pppd and the OS.
const DefaultMemoryLimit = 96 << 20

// parseMiB parses a size in MiB ("96"), or with a unit: "96M", "1G".
func parseMiB(v string) (int64, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "IB"), "B")
	mul := int64(1 << 20)
	switch {
	case strings.HasSuffix(s, "G"):
		mul, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		s = strings.TrimSuffix(s, "M")
	}
	n, err := parseInt(s, 0, 1<<20)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size in MiB (96, 96M, 1G)", v)
	}
	if n > 0 && int64(n)*mul < 16<<20 {
		return 0, fmt.Errorf("%q is below 16 MiB, too little to run the box", v)
	}
	return int64(n) * mul, nil
}
