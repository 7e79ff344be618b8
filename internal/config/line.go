package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/isp-box/isp-box/modem"
)

// lineSet gathers the modem lines from [mgetty] and [line NAME].
type lineSet struct {
	defaults []lineOp // mgetty.config keys before the first `port`
	order    []*lineDef
	byName   map[string]*lineDef
	lockDir  string // [box] lock-dir
}

type lineDef struct {
	name string
	file string // where the line is first defined
	line int
	ops  []lineOp
}

// lineOp is one parsed key; its errors were reported when it was parsed,
// so applying it to every line never reports twice.
type lineOp func(*modem.LineConfig)

func newLineSet() *lineSet { return &lineSet{byName: map[string]*lineDef{}} }

func (ls *lineSet) get(name, file string, line int) *lineDef {
	if d := ls.byName[name]; d != nil {
		return d
	}
	d := &lineDef{name: name, file: file, line: line}
	ls.byName[name] = d
	ls.order = append(ls.order, d)
	return d
}

// mgettyKeys are the keys of [mgetty] and [line NAME].
var mgettyKeys = []string{"debug", "port", "port-owner", "port-group", "port-mode", "data-only",
	"ignore-carrier", "toggle-dtr", "toggle-dtr-waittime", "rings", "speed", "autobauding", "init-chat",
	"answer-chat", "answer-chat-timeout", "modem-check-time", "login-time", "login-prompt", "issue-file",
	"data-flow", "modem-type", "direct", "peer", "device", "autoppp", "kind", "connect-speed", "context",
	"listen", "telnet", "dialogue", "max-connections", "rate-limit", "idle-timeout", "permit", "deny"}

// splitMgetty splits an mgetty.config line into key and value: `key value`
// or `key = value`; a `#` after white space starts a comment unless it is
// inside double quotes.
func splitMgetty(text string) (key, value string) {
	text = strings.TrimSpace(text)
	inQuote := false
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '"':
			inQuote = !inQuote
		case c == '#' && !inQuote && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t'):
			text = strings.TrimSpace(text[:i])
		}
	}
	key, value, _ = strings.Cut(text, " ")
	if i := strings.IndexAny(text, " \t="); i >= 0 {
		key, value = text[:i], text[i:]
	} else {
		key, value = text, ""
	}
	value = strings.TrimSpace(value)
	if strings.HasPrefix(value, "=") {
		value = strings.TrimSpace(value[1:])
	}
	return strings.ToLower(key), value
}

// mgetty maps an mgetty.config pasted into [mgetty].
func (b *builder) mgetty(s *section) {
	var cur *lineDef
	for _, r := range s.Raw {
		key, val := splitMgetty(r.Text)
		if key == "" {
			continue
		}
		if key == "port" {
			name := strings.TrimPrefix(val, "/dev/")
			if name == "" || strings.ContainsAny(name, " \t") {
				b.errorf(r.File, r.Line, "port: %q is not a port name like ttyUSB0", val)
				cur = nil
				continue
			}
			cur = b.lines.get(name, r.File, r.Line)
			continue
		}
		op := b.mgettyKey(key, val, r, "[mgetty]")
		if op == nil {
			continue
		}
		if cur == nil {
			b.lines.defaults = append(b.lines.defaults, op)
		} else {
			cur.ops = append(cur.ops, op)
		}
	}
}

// lineSection maps [line NAME]: the same keys for one line.
func (b *builder) lineSection(s *section) {
	name := strings.TrimPrefix(s.Arg, "/dev/")
	if name == "" {
		return
	}
	d := b.lines.get(name, s.File, s.Line)
	for _, r := range s.Raw {
		key, val := splitMgetty(r.Text)
		if key == "" {
			continue
		}
		if key == "port" {
			b.errorf(r.File, r.Line, "port: not allowed in [line %s]; the section names the port", name)
			continue
		}
		if op := b.mgettyKey(key, val, r, "[line "+name+"]"); op != nil {
			d.ops = append(d.ops, op)
		}
	}
}

// mgettyKey parses one key and returns how it sets a line, or nil after
// reporting an error.
func (b *builder) mgettyKey(key, val string, r rawLine, where string) lineOp {
	bad := func(format string, args ...any) lineOp {
		b.errorf(r.File, r.Line, "%s: %s", key, fmt.Sprintf(format, args...))
		return nil
	}
	boolean := func(set func(*modem.LineConfig, bool)) lineOp {
		v, ok := true, true // mgetty: a boolean key alone means yes
		if val != "" {
			v, ok = parseBool(val)
		}
		if !ok {
			return bad("%q is not %s", val, boolWords)
		}
		return func(c *modem.LineConfig) { set(c, v) }
	}
	seconds := func(lo, hi int, set func(*modem.LineConfig, time.Duration)) lineOp {
		d, err := parseSeconds(val, lo, hi)
		if err != nil {
			return bad("%v", err)
		}
		return func(c *modem.LineConfig) { set(c, d) }
	}
	switch key {
	case "debug":
		n, err := parseInt(val, 0, 9)
		if err != nil {
			return bad("%v", err)
		}
		return func(c *modem.LineConfig) { c.Debug = n }
	case "port-owner", "port-group":
		if val == "" || strings.ContainsAny(val, " \t:") {
			return bad("%q is not a user or group name", val)
		}
		if key == "port-owner" {
			return func(c *modem.LineConfig) { c.PortOwner = val }
		}
		return func(c *modem.LineConfig) { c.PortGroup = val }
	case "port-mode":
		m, err := strconv.ParseUint(val, 8, 32)
		if err != nil || m > 0o777 {
			return bad("%q is not an octal file mode like 0660", val)
		}
		return func(c *modem.LineConfig) { c.PortMode = os.FileMode(m) }
	case "data-only":
		return boolean(func(c *modem.LineConfig, v bool) { c.DataOnly = v })
	case "ignore-carrier":
		return boolean(func(c *modem.LineConfig, v bool) { c.IgnoreCarrier = v })
	case "toggle-dtr":
		return boolean(func(c *modem.LineConfig, v bool) { c.ToggleDTR = v })
	case "autobauding":
		return boolean(func(c *modem.LineConfig, v bool) { c.Autobauding = v })
	case "direct":
		return boolean(func(c *modem.LineConfig, v bool) { c.Direct = v })
	case "autoppp":
		return boolean(func(c *modem.LineConfig, v bool) { c.AutoPPP = v })
	case "toggle-dtr-waittime":
		n, err := parseInt(val, 0, 60000)
		if err != nil {
			return bad("%v (milliseconds)", err)
		}
		return func(c *modem.LineConfig) { c.ToggleDTRWait = time.Duration(n) * time.Millisecond }
	case "rings":
		n, err := parseInt(val, 1, 99)
		if err != nil {
			return bad("%v; expected the number of RINGs before answering (1..99)", err)
		}
		return func(c *modem.LineConfig) { c.Rings = n }
	case "speed":
		n, err := parseSpeed(val)
		if err != nil {
			return bad("%v", err)
		}
		return func(c *modem.LineConfig) { c.Speed = n }
	case "init-chat":
		words, err := splitWords(val)
		if err != nil {
			return bad("%v", err)
		}
		if len(words) == 0 {
			return bad("empty chat; expected expect/send pairs like \"\" ATZ OK")
		}
		return func(c *modem.LineConfig) { c.InitChat = words }
	case "answer-chat":
		// mgetty: `"" ATA CONNECT \c \n`. The box sends the command and
		// always waits for CONNECT, so only the command is taken.
		words, err := splitWords(val)
		if err != nil {
			return bad("%v", err)
		}
		if len(words) < 2 || words[0] != "" || words[1] == "" {
			return bad("%q: expected \"\" followed by the answer command, like \"\" ATA CONNECT", val)
		}
		return func(c *modem.LineConfig) { c.AnswerCommand = words[1] }
	case "answer-chat-timeout":
		return seconds(1, 3600, func(c *modem.LineConfig, d time.Duration) { c.AnswerTimeout = d })
	case "modem-check-time":
		return seconds(0, 86400, func(c *modem.LineConfig, d time.Duration) { c.ModemCheck = d })
	case "login-time":
		return seconds(1, 86400, func(c *modem.LineConfig, d time.Duration) { c.LoginTime = d })
	case "login-prompt":
		p := val
		if len(p) >= 2 && p[0] == '"' && p[len(p)-1] == '"' {
			p = p[1 : len(p)-1] // quotes keep trailing blanks
		}
		return func(c *modem.LineConfig) { c.LoginPrompt = p }
	case "issue-file":
		text, err := b.readAside(r.File, val)
		if err != nil {
			return bad("%v", err)
		}
		return func(c *modem.LineConfig) { c.Issue = text }
	case "data-flow":
		switch strings.ToLower(val) {
		case "hard", "rtscts", "crtscts":
			return func(c *modem.LineConfig) { c.FlowControl = "hard" }
		case "none", "no":
			return func(c *modem.LineConfig) { c.FlowControl = "none" }
		}
		return bad("%q is not hard or none (software flow control is not supported)", val)
	case "modem-type":
		switch strings.ToLower(val) {
		case "auto", "data":
			return func(*modem.LineConfig) {}
		case "cls2", "c2.0", "c2.1":
			return bad("%q: fax is not supported; use auto or data", val)
		}
		return bad("%q is not auto or data", val)
	case "peer":
		if val == "" || strings.ContainsAny(val, " \t") {
			return bad("%q is not a SIP peer name", val)
		}
		return func(c *modem.LineConfig) { c.Peer = val }
	case "kind":
		switch strings.ToLower(val) {
		case modem.KindModem, modem.KindVirtual, modem.KindTCP:
			k := strings.ToLower(val)
			return func(c *modem.LineConfig) { c.Kind = k }
		}
		return bad("%q is not %s, %s or %s", val, modem.KindModem, modem.KindVirtual, modem.KindTCP)
	case "listen":
		if _, err := netip.ParseAddrPort(val); err != nil {
			host, port, err := net.SplitHostPort(val)
			if err != nil || host != "" && strings.ContainsAny(host, " \t") || port == "" {
				return bad("%q is not host:port like 0.0.0.0:2323", val)
			}
		}
		return func(c *modem.LineConfig) { c.Listen = val }
	case "telnet":
		return boolean(func(c *modem.LineConfig, v bool) { c.Telnet = v })
	case "dialogue":
		return boolean(func(c *modem.LineConfig, v bool) { c.Dialogue = v })
	case "max-connections":
		n, err := parseInt(val, 1, 100000)
		if err != nil {
			return bad("%v", err)
		}
		return func(c *modem.LineConfig) { c.MaxConns = n }
	case "rate-limit":
		n, err := parseInt(val, 0, 100000)
		if err != nil {
			return bad("%v; expected new connections a minute from one source (0 = no limit)", err)
		}
		return func(c *modem.LineConfig) { c.RatePerMin = n }
	case "idle-timeout":
		return seconds(0, 86400, func(c *modem.LineConfig, d time.Duration) { c.IdleTimeout = d })
	case "permit", "deny":
		var ps []netip.Prefix
		for _, f := range splitList(val) {
			p, err := parsePrefix(f)
			if err != nil {
				if a, aerr := netip.ParseAddr(f); aerr == nil {
					p = netip.PrefixFrom(a, a.BitLen())
				} else {
					return bad("%v", err)
				}
			}
			ps = append(ps, p)
		}
		if len(ps) == 0 {
			return bad("expected networks like 192.168.1.0/24")
		}
		if key == "permit" {
			return func(c *modem.LineConfig) { c.Permit = append(c.Permit[:len(c.Permit):len(c.Permit)], ps...) }
		}
		return func(c *modem.LineConfig) { c.Deny = append(c.Deny[:len(c.Deny):len(c.Deny)], ps...) }
	case "connect-speed":
		n, err := parseInt(val, 300, 4000000)
		if err != nil {
			return bad("%v; expected the rate a virtual modem reports in CONNECT, like 33600", err)
		}
		return func(c *modem.LineConfig) { c.ConnectSpeed = n }
	case "context":
		if val == "" || strings.ContainsAny(val, " \t[]") {
			return bad("%q is not a dial plan context name", val)
		}
		return func(c *modem.LineConfig) { c.Context = val }
	case "device":
		if !strings.HasPrefix(val, "/") {
			return bad("%q is not an absolute device path like /dev/ttyUSB0", val)
		}
		return func(c *modem.LineConfig) { c.Device = val }
	}
	b.errorf(r.File, r.Line, "unknown key %q in %s%s", key, where, suggest(key, mgettyKeys))
	return nil
}

// readAside reads a file named by the config (issue-file, @secret)
// relative to the file that names it, and records it for SIGHUP.
func (b *builder) readAside(from, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty file name")
	}
	p, err := b.src.resolve(from, name)
	if err != nil {
		return "", err
	}
	data, err := b.src.readFile(p)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", p, unwrapPathErr(err))
	}
	b.lx.files = appendUnique(b.lx.files, p)
	return string(data), nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// finishLines builds every line: mgetty's defaults, the mgetty port keys
// and [line NAME] keys, then pppd's [ppp] and [ppp NAME] on top (pppd
// sets the tty after mgetty hands it over).
func (b *builder) finishLines() {
	for _, d := range b.lines.order {
		mc := modem.DefaultLineConfig(d.name)
		if b.lines.lockDir != "" {
			mc.LockDir = b.lines.lockDir
		}
		mc.File, mc.Line = d.file, d.line
		for _, op := range b.lines.defaults {
			op(&mc)
		}
		for _, op := range d.ops {
			op(&mc)
		}
		st := newPPPState()
		if b.ppp != nil {
			st.apply(b.ppp)
		}
		for _, l := range b.pppFor[d.name] {
			st.apply(l)
		}
		st.modem(&mc)
		if st.addrFile != "" {
			b.addrAt[d.name] = rawLine{File: st.addrFile, Line: st.addrLine}
		}
		b.cfg.Lines = append(b.cfg.Lines, Line{Modem: mc, PPP: st.config()})
	}
	st := newPPPState()
	if b.ppp != nil {
		st.apply(b.ppp)
	}
	b.cfg.PPP = st.config()
}
