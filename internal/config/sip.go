package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/isp-box/isp-box/pbx"
)

// generalKeys are the [general] keys, for "did you mean".
var generalKeys = []string{"udpbindaddr", "bindaddr", "bindport", "realm", "defaultexpiry", "minexpiry",
	"maxexpiry", "qualifyfreq", "alwaysauthreject", "allowguest", "context", "permit", "deny",
	"useragent", "externip", "rtpstart", "rtpend", "maxauthfailures", "bantime", "transport",
	"maxcalls", "sourcerate", "guessrate",
	"register", "registertimeout", "registerattempts"}

// generalIgnored are sip.conf/extensions.conf [general] keys that are
// accepted so a real file pastes in, with the reason they change nothing.
var generalIgnored = map[string]string{
	"srvlookup":    "the box makes no outbound registrations or DNS SRV lookups",
	"language":     "the box plays no prompts",
	"allow":        "codecs pass through unchanged; set allow= per peer to restrict them",
	"disallow":     "codecs pass through unchanged; set disallow= per peer to restrict them",
	"static":       "extensions.conf's static: the dial plan is never written back",
	"writeprotect": "extensions.conf's writeprotect: the dial plan is never written back",
	// extensions.conf's other [general] keys (pbx/pbx_config.c).
	"autofallthrough":      "an extension that runs out of priorities hangs up, as autofallthrough=yes",
	"clearglobalvars":      "the dial plan has no global variables",
	"extenpatternmatchnew": "patterns match as Asterisk's; the matcher has no second implementation",
	"userscontext":         "the box reads no users.conf",
	"overrideswitch":       "the box has no dial-plan switches",
}

// general maps sip.conf's [general] onto g.
func (b *builder) general(s *section, es []entry) {
	g := &b.cfg.PBX.General
	var udp, bindAddr *entry
	port := 0
	last := map[string]*entry{} // key -> its last line, for errors about two keys
	for i := range es {
		e := &es[i]
		last[e.Key] = e
		bad := func(format string, args ...any) {
			b.errorf(e.File, e.Line, "%s: %s", e.Key, fmt.Sprintf(format, args...))
		}
		switch e.Key {
		case "udpbindaddr":
			udp = e
		case "bindaddr":
			bindAddr = e
		case "bindport":
			p, err := parsePort(e.Value)
			if err != nil {
				bad("%v", err)
			}
			port = p
		case "realm":
			if e.Value == "" {
				bad("empty realm")
			}
			g.Realm = e.Value
		case "defaultexpiry", "minexpiry", "maxexpiry":
			d, err := parseSeconds(e.Value, 1, 86400*365)
			if err != nil {
				bad("%v", err)
				continue
			}
			switch e.Key {
			case "defaultexpiry":
				g.DefaultExpiry = d
			case "minexpiry":
				g.MinExpiry = d
			default:
				g.MaxExpiry = d
			}
		case "qualifyfreq":
			d, err := parseSeconds(e.Value, 1, 86400)
			if err != nil {
				bad("%v", err)
			}
			g.QualifyFreq = d
		case "register", "registertimeout", "registerattempts":
			b.trunkGeneral(e)
		case "alwaysauthreject", "allowguest":
			v, ok := parseBool(e.Value)
			if !ok {
				bad("%q is not %s", e.Value, boolWords)
			}
			if e.Key == "allowguest" {
				g.AllowGuest = v
			} else {
				g.AlwaysAuthReject = v
			}
		case "context":
			if e.Value == "" {
				bad("empty context")
			}
			g.Context = e.Value
		case "permit", "deny":
			p, err := parseACL(e.Value)
			if err != nil {
				bad("%v", err)
				continue
			}
			g.ACL = append(g.ACL, pbx.ACLRule{Permit: e.Key == "permit", Prefix: p})
			if e.Key == "permit" {
				g.Permit = append(g.Permit, p)
			} else {
				g.Deny = append(g.Deny, p)
			}
		case "useragent":
			g.UserAgent = e.Value
		case "externip":
			a, err := parseAddr(e.Value)
			if err != nil {
				bad("%v (a host name is not supported)", err)
			}
			g.ExternIP = a
		case "rtpstart", "rtpend":
			p, err := parsePort(e.Value)
			if err != nil {
				bad("%v", err)
			}
			if e.Key == "rtpstart" {
				g.RTPStart = p
			} else {
				g.RTPEnd = p
			}
		case "maxauthfailures":
			n, err := parseInt(e.Value, 1, 1000000)
			if err != nil {
				bad("%v", err)
			}
			g.MaxAuthFailures = n
		case "bantime":
			d, err := parseSeconds(e.Value, 1, 86400*365)
			if err != nil {
				bad("%v", err)
			}
			g.BanTime = d
		case "maxcalls", "sourcerate", "guessrate":
			// 0 turns the limit off; the pbx takes 0 for "default", -1 for off
			n, err := parseInt(e.Value, 0, 1000000)
			if err != nil {
				bad("%v (0 = no limit)", err)
				continue
			}
			if n == 0 {
				n = -1
			}
			switch e.Key {
			case "maxcalls":
				g.MaxCalls = n
			case "sourcerate":
				g.SourceRate = n
			default:
				g.GuessRate = n
			}
		case "transport":
			if !strings.EqualFold(e.Value, "udp") {
				bad("%q: only udp is supported", e.Value)
			}
		default:
			if peerDefaultKeys[e.Key] {
				// chan_sip: every peer's default; applied (and checked)
				// as the first lines of each peer (builder.peerDefaults).
				continue
			}
			if why, ok := generalIgnored[e.Key]; ok {
				b.warnf(e.File, e.Line, "%s: ignored: %s", e.Key, why)
				continue
			}
			if why := ignoredWhy(e.Key, true); why != "" {
				b.warnf(e.File, e.Line, "%s: ignored: %s", e.Key, why)
				continue
			}
			b.errorf(e.File, e.Line, "unknown key %q in [general]%s", e.RawKey, suggest(e.Key, generalKeys))
		}
	}
	// udpbindaddr wins over bindaddr; a port in udpbindaddr wins over
	// bindport (chan_sip's order).
	addr := g.UDPBindAddr.Addr()
	if port == 0 {
		port = int(g.UDPBindAddr.Port())
	}
	for _, e := range []*entry{bindAddr, udp} {
		if e == nil {
			continue
		}
		if ap, err := netip.ParseAddrPort(e.Value); err == nil {
			addr, port = ap.Addr(), int(ap.Port())
			if port == 0 {
				b.errorf(e.File, e.Line, "%s: port 0 is not a port number 1..65535", e.Key)
			}
			continue
		}
		a, err := netip.ParseAddr(strings.Trim(e.Value, "[]"))
		if err != nil {
			b.errorf(e.File, e.Line, "%s: %q is not an IP address or address:port", e.Key, e.Value)
			continue
		}
		addr = a
	}
	if port > 0 {
		g.UDPBindAddr = netip.AddrPortFrom(addr, uint16(port))
	}
	// Report a pair that disagrees at whichever of the two came last.
	at := func(a, b string) (string, int) {
		ea, eb := last[a], last[b]
		switch {
		case ea == nil && eb == nil:
			return s.File, s.Line
		case ea == nil || eb != nil && eb.Line > ea.Line:
			return eb.File, eb.Line
		}
		return ea.File, ea.Line
	}
	if g.MinExpiry > g.MaxExpiry {
		f, l := at("minexpiry", "maxexpiry")
		b.errorf(f, l, "minexpiry %s is longer than maxexpiry %s", secs(g.MinExpiry), secs(g.MaxExpiry))
	}
	if g.RTPStart >= g.RTPEnd {
		f, l := at("rtpstart", "rtpend")
		b.errorf(f, l, "rtpstart %d must be below rtpend %d", g.RTPStart, g.RTPEnd)
	}
}

// peerKeys are the peer keys, for "did you mean".
var peerKeys = []string{"type", "context", "secret", "md5secret", "defaultuser", "username", "host",
	"defaultip", "port", "qualify", "qualifyfreq", "directmedia", "canreinvite", "regexten", "nat",
	"insecure", "allow", "disallow", "permit", "deny", "call-limit", "busylevel", "description",
	"maxforwards", "huntgroup", "dtmfmode", "language", "transport", "fromuser", "fromdomain", "outboundproxy",
	"session-timers", "session-expires", "session-minse", "session-refresher", "rtptimeout", "rtpholdtimeout"}

// codecNames are Asterisk's codec names accepted by allow/disallow.
var codecNames = map[string]bool{
	"ulaw": true, "alaw": true, "gsm": true, "g722": true, "g729": true, "g726": true, "g726aal2": true,
	"g723": true, "ilbc": true, "speex": true, "speex16": true, "slin": true, "slin16": true,
	"lpc10": true, "adpcm": true, "opus": true, "h261": true, "h263": true, "h263p": true, "h264": true,
	"vp8": true, "t140": true, "t140red": true, "siren7": true, "siren14": true, "testlaw": true,
}

// peer maps one sip.conf device section onto a pbx.Peer.
func (b *builder) peer(s *section, es []entry) pbx.Peer {
	p := pbx.DefaultPeer(s.Name)
	p.File, p.Line = s.File, s.Line
	where := "peer [" + s.Name + "]"
	disallowedAll := false
	var allowNoDisallow *entry
	for i := range es {
		e := &es[i]
		bad := func(format string, args ...any) {
			b.errorf(e.File, e.Line, "%s: %s", e.Key, fmt.Sprintf(format, args...))
		}
		switch e.Key {
		case "type":
			switch v := strings.ToLower(e.Value); v {
			case "friend", "peer", "user":
				p.Type = v
			default:
				bad("%q is not friend, peer or user", e.Value)
			}
		case "context":
			if e.Value == "" {
				bad("empty context")
			}
			p.Context = e.Value
		case "secret":
			p.Secret = e.Value
		case "md5secret":
			if len(e.Value) != 32 || strings.Trim(strings.ToLower(e.Value), "0123456789abcdef") != "" {
				bad("%q is not 32 hex digits (MD5 of user:realm:secret)", e.Value)
			}
			p.MD5Secret = strings.ToLower(e.Value)
		case "defaultuser", "username":
			p.Username = e.Value
		case "host":
			if err := checkHost(e.Value); err != nil {
				bad("%v", err)
			}
			p.Host = e.Value
		case "defaultip":
			a, err := parseAddr(e.Value)
			if err != nil {
				bad("%v", err)
			}
			p.DefaultIP = a
		case "port":
			n, err := parsePort(e.Value)
			if err != nil {
				bad("%v", err)
			}
			p.Port = n
		case "qualify":
			// chan_sip: yes = DEFAULT_MAXMS (2000), no = 0, else maxms.
			if v, ok := parseBool(e.Value); ok && !isDigits(e.Value) {
				p.Qualify = 0
				if v {
					p.Qualify = 2000
				}
				continue
			}
			n, err := parseInt(e.Value, 0, 3600000)
			if err != nil {
				bad("%q is not yes, no or a number of milliseconds", e.Value)
			}
			p.Qualify = n
		case "qualifyfreq":
			d, err := parseSeconds(e.Value, 1, 86400)
			if err != nil {
				bad("%v", err)
			}
			p.QualifyFreq = d
		case "directmedia", "canreinvite":
			on, err := parseDirectMedia(e.Value)
			if err != nil {
				bad("%v", err)
			}
			p.DirectMedia = on
		case "regexten":
			p.RegExten = e.Value
		case "nat":
			v, warn, err := parseNAT(e.Value)
			if err != nil {
				bad("%v", err)
			}
			if warn != "" {
				b.warnf(e.File, e.Line, "nat: %s", warn)
			}
			p.NAT = v
		case "insecure":
			var parts []string
			for _, w := range splitList(strings.ToLower(e.Value)) {
				switch w {
				case "port", "invite":
					parts = append(parts, w)
				case "no":
				default:
					bad("%q is not port, invite, port,invite or no", e.Value)
				}
			}
			p.Insecure = strings.Join(parts, ",")
		case "disallow", "allow":
			for _, c := range splitList(strings.ToLower(strings.ReplaceAll(e.Value, "&", ","))) {
				remove := e.Key == "disallow"
				if strings.HasPrefix(c, "!") {
					remove, c = !remove, c[1:]
				}
				switch {
				case c == "all" && remove:
					p.Allow, disallowedAll = nil, true
				case c == "all":
					p.Allow, disallowedAll = nil, false
				case !codecNames[c]:
					bad("unknown codec %q%s", c, suggest(c, sortedKeys(codecNames)))
				case remove:
					p.Allow = deleteString(p.Allow, c)
				case !disallowedAll:
					allowNoDisallow = e
				default:
					p.Allow = append(deleteString(p.Allow, c), c)
				}
			}
		case "fromuser", "fromdomain", "outboundproxy":
			b.trunkPeer(&p, *e)
		case "permit", "deny":
			pr, err := parseACL(e.Value)
			if err != nil {
				bad("%v", err)
				continue
			}
			p.ACL = append(p.ACL, pbx.ACLRule{Permit: e.Key == "permit", Prefix: pr})
		case "call-limit", "busylevel":
			n, err := parseInt(e.Value, 0, 1000000)
			if err != nil {
				bad("%v", err)
			}
			p.CallLimit = n
		case "description":
			p.Description = e.Value
		case "maxforwards":
			n, err := parseInt(e.Value, 1, 255)
			if err != nil {
				bad("%v", err)
			}
			p.MaxForwards = n
		case "session-timers":
			switch v := strings.ToLower(e.Value); v {
			case "accept", "originate", "refuse":
				p.SessionTimers = v
			default:
				bad("%q is not accept, originate or refuse", e.Value)
			}
		case "session-refresher":
			switch v := strings.ToLower(e.Value); v {
			case "uas", "uac":
				p.SessionRefresher = v
			default:
				bad("%q is not uas or uac", e.Value)
			}
		case "session-expires", "session-minse":
			// RFC 4028 §4: a session interval is never below 90 s
			d, err := parseSeconds(e.Value, 90, 86400)
			if err != nil {
				bad("%v", err)
				continue
			}
			if e.Key == "session-expires" {
				p.SessionExpires = d
			} else {
				p.SessionMinSE = d
			}
		case "rtptimeout", "rtpholdtimeout":
			d, err := parseSeconds(e.Value, 0, 86400)
			if err != nil {
				bad("%v (0 = off)", err)
				continue
			}
			if e.Key == "rtptimeout" {
				p.RTPTimeout = d
			} else {
				p.RTPHoldTimeout = d
			}
		case "huntgroup":
			if e.Value == "" || strings.ContainsAny(e.Value, " \t,") {
				bad("%q is not a hunt group name (one word)", e.Value)
			}
			p.HuntGroup = e.Value
		case "dtmfmode":
			switch strings.ToLower(e.Value) {
			case "rfc2833", "inband", "info", "shortinfo", "auto":
				b.warnf(e.File, e.Line, "dtmfmode: ignored: DTMF passes through in the media unchanged")
			default:
				bad("%q is not rfc2833, inband, info, shortinfo or auto", e.Value)
			}
		case "language":
			b.warnf(e.File, e.Line, "language: ignored: the box plays no prompts")
		case "transport":
			for _, t := range splitList(strings.ToLower(e.Value)) {
				if t != "udp" {
					bad("%q: only udp is supported", e.Value)
					break
				}
			}
		default:
			if why := ignoredWhy(e.Key, false); why != "" {
				b.warnf(e.File, e.Line, "%s: ignored: %s", e.Key, why)
				continue
			}
			b.errorf(e.File, e.Line, "unknown key %q in %s%s", e.RawKey, where, suggest(e.Key, peerKeys))
		}
	}
	if allowNoDisallow != nil {
		b.warnf(allowNoDisallow.File, allowNoDisallow.Line,
			"allow: without disallow=all before it, allow= only adds to the default codecs (all pass); write disallow=all first to restrict")
	}
	if p.SessionMinSE > p.SessionExpires {
		b.errorf(s.File, s.Line, "%s: session-minse %s is above session-expires %s", where, p.SessionMinSE, p.SessionExpires)
	}
	if disallowedAll && len(p.Allow) == 0 {
		b.errorf(s.File, s.Line, "%s: disallow=all and no allow= leaves no codec", where)
	}
	if p.Host == "dynamic" && p.Secret == "" && p.MD5Secret == "" {
		b.warnf(s.File, s.Line, "%s: host=dynamic with no secret: anyone can register as this peer", where)
	}
	return p
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// parseDirectMedia: yes, no, nonat, update, outgoing (comma lists, chan_sip
// C 31203-31226). Everything but no means media may flow directly.
func parseDirectMedia(v string) (bool, error) {
	if b, ok := parseBool(v); ok {
		return b, nil
	}
	words := splitList(strings.ToLower(v))
	if len(words) == 0 {
		return false, fmt.Errorf("empty value; expected yes, no, nonat, update or outgoing")
	}
	for _, w := range words {
		switch w {
		case "yes", "nonat", "update", "outgoing":
		default:
			return false, fmt.Errorf("%q is not yes, no, nonat, update or outgoing", v)
		}
	}
	return true, nil
}

// parseNAT validates nat= (config_parser.c 795-838): a comma list of no,
// force_rport, comedia, auto_force_rport, auto_comedia; yes is deprecated.
func parseNAT(v string) (string, string, error) {
	words := splitList(strings.ToLower(v))
	if len(words) == 0 {
		return "", "", fmt.Errorf("empty value; expected no, force_rport, comedia, auto_force_rport or auto_comedia")
	}
	warn := ""
	for _, w := range words {
		switch w {
		case "no", "force_rport", "comedia", "auto_force_rport", "auto_comedia":
		case "yes":
			warn = "nat=yes is deprecated in Asterisk; it means force_rport,comedia"
		default:
			return "", "", fmt.Errorf("%q is not no, force_rport, comedia, auto_force_rport or auto_comedia%s", w,
				suggest(w, []string{"no", "force_rport", "comedia", "auto_force_rport", "auto_comedia"}))
		}
		if w == "no" {
			return "no", warn, nil // chan_sip: no anywhere wins
		}
	}
	return strings.Join(words, ","), warn, nil
}

// checkHost accepts host=dynamic, an IP address or a host name, with an
// optional :port.
func checkHost(v string) error {
	if v == "dynamic" {
		return nil
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return nil
	}
	if _, err := netip.ParseAddrPort(v); err == nil {
		return nil
	}
	h, port, hasPort := strings.Cut(v, ":")
	if hasPort {
		if _, err := parsePort(port); err != nil {
			return fmt.Errorf("%q: %w", v, err)
		}
	}
	if h == "" || strings.Trim(strings.ToLower(h), "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
		return fmt.Errorf("%q is not dynamic, an IP address or a host name", v)
	}
	return nil
}

func deleteString(list []string, s string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
