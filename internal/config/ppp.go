package config

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/ppp"
)

// pppLayer is one options file: [ppp] (/etc/ppp/options) or [ppp NAME]
// (/etc/ppp/options.NAME). Its options were checked when it was read; ops
// replays them onto each line's state.
type pppLayer struct {
	name string // "" for [ppp]
	file string
	line int
	ops  []pppOp
}

type pppOp func(*pppState)

// pppState is pppd's option state while the files are read in order.
type pppState struct {
	c         ppp.Config
	dns, wins [2]netip.Addr // pppd's two slots (ipcp.c setdnsaddr/setwinsaddr)
	flow      string        // "hard", "none" or "" (pppd leaves the tty as it found it)
	lock      *bool
	local     *bool
	speed     int
	addrFile  string // where local:remote was written, for validation
	addrLine  int
}

func newPPPState() *pppState { return &pppState{c: ppp.DefaultConfig()} }

func (st *pppState) apply(l *pppLayer) {
	for _, op := range l.ops {
		op(st)
	}
}

func (st *pppState) config() ppp.Config {
	c := st.c
	c.DNS = slots(st.dns)
	c.WINS = slots(st.wins)
	c.Auth = append([]ppp.AuthProto(nil), c.Auth...)
	return c
}

func slots(s [2]netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// setSlot is pppd's setdnsaddr: the first address fills the primary slot
// if it is empty, and every address sets the secondary, so one ms-dns
// fills both.
func setSlot(s *[2]netip.Addr, a netip.Addr) {
	if !s[0].IsValid() {
		s[0] = a
	}
	s[1] = a
}

// modem applies pppd's serial-port options to the line.
func (st *pppState) modem(mc *modem.LineConfig) {
	if st.flow != "" {
		mc.FlowControl = st.flow
	}
	if st.lock != nil {
		mc.Lock = *st.lock
	}
	if st.local != nil {
		mc.Local = *st.local
	}
	if st.speed != 0 {
		mc.Speed = st.speed
	}
}

// pppOption is one pppd option: how many arguments it takes and how it is
// parsed. parse reports its own errors and returns nil on error.
type pppOption struct {
	args  int
	parse func(b *builder, r rawLine, name string, args []string) pppOp
}

func flagOpt(f func(*pppState)) pppOption {
	return pppOption{0, func(*builder, rawLine, string, []string) pppOp { return f }}
}

// showPassword keeps pppd's meaning (the PAP password is logged in clear,
// pppd's upap.c) but warns: the password logged is whatever a caller tried,
// so a stranger's guesses at other users' passwords end up in the log.
var showPassword = pppOption{0, func(b *builder, r rawLine, name string, _ []string) pppOp {
	b.warnf(r.File, r.Line, "%s: the log will hold every PAP password callers try, right or wrong, in clear; remove it unless you are debugging a login", name)
	return func(st *pppState) { st.c.ShowPassword = true }
}}

// ignored is an option pppd has that changes nothing in the box; it is
// accepted with a warning saying why.
func ignored(args int, why string) pppOption {
	return pppOption{args, func(b *builder, r rawLine, name string, _ []string) pppOp {
		b.warnf(r.File, r.Line, "%s: ignored: %s", name, why)
		return func(*pppState) {}
	}}
}

func unsupported(args int, why string) pppOption {
	return pppOption{args, func(b *builder, r rawLine, name string, _ []string) pppOp {
		b.errorf(r.File, r.Line, "%s: not supported: %s", name, why)
		return nil
	}}
}

func intOpt(lo, hi int, set func(*pppState, int)) pppOption {
	return pppOption{1, func(b *builder, r rawLine, name string, a []string) pppOp {
		n, err := parseInt(a[0], lo, hi)
		if err != nil {
			b.errorf(r.File, r.Line, "%s: %v", name, err)
			return nil
		}
		return func(st *pppState) { set(st, n) }
	}}
}

func secOpt(lo, hi int, set func(*pppState, time.Duration)) pppOption {
	return pppOption{1, func(b *builder, r rawLine, name string, a []string) pppOp {
		d, err := parseSeconds(a[0], lo, hi)
		if err != nil {
			b.errorf(r.File, r.Line, "%s: %v", name, err)
			return nil
		}
		return func(st *pppState) { set(st, d) }
	}}
}

func addrOpt(set func(*pppState, netip.Addr)) pppOption {
	return pppOption{1, func(b *builder, r rawLine, name string, a []string) pppOp {
		ip, err := parseAddr4(a[0])
		if err != nil {
			b.errorf(r.File, r.Line, "%s: %v", name, err)
			return nil
		}
		return func(st *pppState) { set(st, ip) }
	}}
}

func requireAuth(p ppp.AuthProto) pppOption {
	// auth.c: require-pap & co. set auth_required too.
	return flagOpt(func(st *pppState) {
		st.c.RequireAuth = true
		for _, x := range st.c.Auth {
			if x == p {
				return
			}
		}
		st.c.Auth = append(st.c.Auth, p)
	})
}

const notSelfAuth = "the box never authenticates itself to the client"

// pppOptions are the pppd options the box understands (pppd.8).
var pppOptions map[string]pppOption

func init() {
	yes, no := true, false
	pppOptions = map[string]pppOption{
		"ms-dns":  addrOpt(func(st *pppState, a netip.Addr) { setSlot(&st.dns, a) }),
		"ms-wins": addrOpt(func(st *pppState, a netip.Addr) { setSlot(&st.wins, a) }),
		"asyncmap": {1, func(b *builder, r rawLine, name string, a []string) pppOp {
			// pppd reads the map as hex always ("asyncmap 200" is 0x200) and
			// ORs repeated options together.
			v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(a[0]), "0x"), 16, 32)
			if err != nil {
				b.errorf(r.File, r.Line, "%s: %q is not a 32-bit hex number like 0 or 000a0000", name, a[0])
				return nil
			}
			return func(st *pppState) { st.c.AsyncMap |= uint32(v) }
		}},
		"auth":              flagOpt(func(st *pppState) { st.c.RequireAuth = true }),
		"noauth":            flagOpt(func(st *pppState) { st.c.RequireAuth = false }),
		"+pap":              requireAuth(ppp.AuthPAP),
		"require-pap":       requireAuth(ppp.AuthPAP),
		"+chap":             requireAuth(ppp.AuthCHAP),
		"require-chap":      requireAuth(ppp.AuthCHAP),
		"require-mschap":    requireAuth(ppp.AuthMSCHAP),
		"require-mschap-v2": requireAuth(ppp.AuthMSCHAPv2),
		"refuse-pap":        ignored(0, notSelfAuth),
		"-pap":              ignored(0, notSelfAuth),
		"refuse-chap":       ignored(0, notSelfAuth),
		"-chap":             ignored(0, notSelfAuth),
		"refuse-mschap":     ignored(0, notSelfAuth),
		"-mschap":           ignored(0, notSelfAuth),
		"refuse-mschap-v2":  ignored(0, notSelfAuth),
		"-mschap-v2":        ignored(0, notSelfAuth),
		"refuse-eap":        ignored(0, "the box does not offer EAP"),
		"login":             flagOpt(func(st *pppState) { st.c.Login = true }),
		"show-password":     showPassword,
		"debug":             flagOpt(func(st *pppState) { st.c.Debug = true }),
		"crtscts":           flagOpt(func(st *pppState) { st.flow = "hard" }),
		"nocrtscts":         flagOpt(func(st *pppState) { st.flow = "none" }),
		"-crtscts":          flagOpt(func(st *pppState) { st.flow = "none" }),
		"xonxoff":           unsupported(0, "software flow control would corrupt PPP frames; use crtscts or nocrtscts"),
		"cdtrcts":           unsupported(0, "DTR/CTS flow control; use crtscts or nocrtscts"),
		"lock":              flagOpt(func(st *pppState) { st.lock = &yes }),
		"nolock":            flagOpt(func(st *pppState) { st.lock = &no }),
		"local":             flagOpt(func(st *pppState) { st.local = &yes }),
		"modem":             flagOpt(func(st *pppState) { st.local = &no }),
		"lcp-echo-interval": secOpt(0, 86400, func(st *pppState, d time.Duration) { st.c.EchoInterval = d }),
		"lcp-echo-failure":  intOpt(0, 1000000, func(st *pppState, n int) { st.c.EchoFailure = n }),
		"lcp-echo-adaptive": flagOpt(func(st *pppState) { st.c.EchoAdaptive = true }),
		"lcp-restart":       secOpt(1, 3600, func(st *pppState, d time.Duration) { st.c.Restart = d }),
		"lcp-max-configure": intOpt(1, 1000, func(st *pppState, n int) { st.c.MaxConfigure = n }),
		"lcp-max-terminate": intOpt(1, 1000, func(st *pppState, n int) { st.c.MaxTerminate = n }),
		"lcp-max-failure":   intOpt(1, 1000, func(st *pppState, n int) { st.c.MaxFailure = n }),
		"proxyarp":          flagOpt(func(st *pppState) { st.c.ProxyARP = true }),
		"noproxyarp":        flagOpt(func(st *pppState) { st.c.ProxyARP = false }),
		"noipx":             flagOpt(func(*pppState) {}), // options.c: "Dummy option, does nothing"
		"novj":              flagOpt(func(st *pppState) { st.c.VJ = false }),
		"vj-max-slots":      intOpt(2, 16, func(st *pppState, n int) { st.c.VJMaxSlots = n }),
		"mru":               intOpt(128, 16384, func(st *pppState, n int) { st.c.MRU = n }),
		"mtu":               intOpt(128, 16384, func(st *pppState, n int) { st.c.MTU = n }),
		"idle":              secOpt(0, 86400*365, func(st *pppState, d time.Duration) { st.c.Idle = d }),
		"maxconnect":        secOpt(0, 86400*365, func(st *pppState, d time.Duration) { st.c.MaxConnect = d }),
		"netmask": {1, func(b *builder, r rawLine, name string, a []string) pppOp {
			m, _, err := parseNetmask(a[0])
			if err != nil {
				b.errorf(r.File, r.Line, "%s: %v", name, err)
				return nil
			}
			return func(st *pppState) { st.c.Netmask = m }
		}},
		"name": {1, func(b *builder, r rawLine, name string, a []string) pppOp {
			return func(st *pppState) { st.c.Name = a[0] }
		}},
		"pap-timeout":      secOpt(0, 86400, func(st *pppState, d time.Duration) { st.c.AuthTimeout = d }),
		"ipcp-max-failure": intOpt(1, 1000, func(st *pppState, n int) { st.c.IPCPMaxFailure = n }),
		"remotename":       ignored(1, "the client's name comes from its authentication"),
		"ipparam":          ignored(1, "the box runs no ip-up/ip-down scripts"),
		"defaultroute":     ignored(0, "the box never routes through a client"),
		"nodefaultroute":   ignored(0, "the box never routes through a client"),
		"usepeerdns":       ignored(0, "the box is the DNS giver, not the taker"),
		"nodetach":         ignored(0, "the box always runs in the foreground"),
		"updetach":         ignored(0, "the box always runs in the foreground"),
		"persist":          ignored(0, "lines answer calls; there is nothing to redial"),
		"noccp":            ignored(0, "the box negotiates no compression (CCP) anyway"),
		"nobsdcomp":        ignored(0, "the box negotiates no compression (CCP) anyway"),
		"nodeflate":        ignored(0, "the box negotiates no compression (CCP) anyway"),
		"ktune":            ignored(0, "kernel network mode turns on IP forwarding itself"),
	}
}

// pppSection reads [ppp] or [ppp NAME].
func (b *builder) pppSection(s *section) {
	l := &pppLayer{name: s.Arg, file: s.File, line: s.Line}
	where := "[" + s.Name + "]"
	for _, r := range s.Raw {
		words, err := pppWords(r.Text)
		if err != nil {
			b.errorf(r.File, r.Line, "%v", err)
			continue
		}
		if slices.ContainsFunc(words, func(w string) bool { return strings.Contains(w, "=") }) {
			b.errorf(r.File, r.Line, "pppd options take no =: write %q as option and value separated by a blank, like lcp-echo-interval 30",
				strings.TrimSpace(r.Text))
			continue
		}
		for len(words) > 0 {
			name := words[0]
			words = words[1:]
			if op := b.pppAddrPair(r, name); op != nil {
				l.ops = append(l.ops, op)
				continue
			}
			if isDigits(name) {
				// pppd: a bare number is the tty speed.
				n, err := parseSpeed(name)
				if err != nil {
					b.errorf(r.File, r.Line, "speed: %v", err)
					continue
				}
				l.ops = append(l.ops, func(st *pppState) { st.speed = n })
				continue
			}
			if strings.HasPrefix(name, "/") {
				b.errorf(r.File, r.Line, "device %s in pppd options: name the line with [ppp NAME] or [line NAME] instead", name)
				continue
			}
			if strings.Contains(name, ":") {
				continue // bad address pair, reported by pppAddrPair
			}
			opt, ok := pppOptions[strings.ToLower(name)]
			if !ok {
				b.errorf(r.File, r.Line, "unknown pppd option %q in %s%s", name, where, suggest(name, sortedKeys(pppOptions)))
				words = nil // its arguments would read as options
				continue
			}
			if len(words) < opt.args {
				b.errorf(r.File, r.Line, "%s: missing argument", name)
				break
			}
			if op := opt.parse(b, r, strings.ToLower(name), words[:opt.args]); op != nil {
				l.ops = append(l.ops, op)
			}
			words = words[opt.args:]
		}
	}
	if s.Arg == "" {
		if b.ppp != nil {
			// A second [ppp] continues the first, as if it were one file.
			b.ppp.ops = append(b.ppp.ops, l.ops...)
			return
		}
		b.ppp = l
		return
	}
	b.pppFor[s.Arg] = append(b.pppFor[s.Arg], l)
}

// pppAddrPair parses pppd's `local:remote` (either side may be empty). It
// returns nil if word is not one, reporting an error if it looks like one
// but is malformed.
func (b *builder) pppAddrPair(r rawLine, word string) pppOp {
	l, rm, ok := strings.Cut(word, ":")
	if !ok || strings.Count(word, ":") != 1 {
		if strings.Count(word, ":") > 1 {
			b.errorf(r.File, r.Line, "%q is not a local:remote IPv4 address pair like 192.168.32.1:192.168.32.105", word)
		}
		return nil
	}
	var la, ra netip.Addr
	var err error
	if l != "" {
		if la, err = parseAddr4(l); err != nil {
			b.errorf(r.File, r.Line, "%q: local address: %v (expected local:remote like 192.168.32.1:192.168.32.105)", word, err)
			return nil
		}
	}
	if rm != "" {
		if ra, err = parseAddr4(rm); err != nil {
			b.errorf(r.File, r.Line, "%q: remote address: %v (expected local:remote like 192.168.32.1:192.168.32.105)", word, err)
			return nil
		}
	}
	if l == "" && rm == "" {
		b.errorf(r.File, r.Line, "%q: empty address pair (expected local:remote like 192.168.32.1:192.168.32.105)", word)
		return nil
	}
	return func(st *pppState) {
		if la.IsValid() {
			st.c.Local = la
		}
		if ra.IsValid() {
			st.c.Remote = ra
		}
		st.addrFile, st.addrLine = r.File, r.Line
	}
}
