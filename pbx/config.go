package pbx

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/isp-box/isp-box/pbx/dialplan"
)

// Config is everything the PBX needs, as sip.conf's [general], the peer
// sections and extensions.conf gave it. internal/config fills it from the
// file; DefaultConfig gives chan_sip's defaults.
type Config struct {
	General  General
	Peers    []Peer          // sorted as in the file
	Dialplan []dialplan.Line // raw dial plan lines; compiled by dialplan.Compile
}

// General is sip.conf's [general] for the keys the box uses.
type General struct {
	UDPBindAddr      netip.AddrPort // udpbindaddr, or bindaddr + bindport; default 0.0.0.0:5060
	Realm            string         // realm; default "asterisk" like chan_sip
	DefaultExpiry    time.Duration  // defaultexpiry; 120 s
	MinExpiry        time.Duration  // minexpiry; 60 s
	MaxExpiry        time.Duration  // maxexpiry; 3600 s
	QualifyFreq      time.Duration  // qualifyfreq; 60 s
	AlwaysAuthReject bool           // alwaysauthreject; yes
	AllowGuest       bool           // allowguest; yes in chan_sip, but the box never lets a guest reach the dial plan
	Context          string         // context for guests; "default"
	Permit           []netip.Prefix // box-wide ACL: permit= (evaluated after Deny, chan_sip order: last match wins)
	Deny             []netip.Prefix
	ACL              []ACLRule     // permit/deny in file order; what Permit/Deny were built from
	MaxAuthFailures  int           // failures per source before a ban; 0 = 10
	BanTime          time.Duration // length of a ban; 0 = 5 min
	UserAgent        string        // our User-Agent / Server header
	ExternIP         netip.Addr    // address to put in relayed SDP and Contact when set (externip)
	RTPStart, RTPEnd int           // rtpstart/rtpend for the relay; 10000..20000
	MaxCalls         int           // maxcalls: calls at once; past it new INVITEs get 503 + Retry-After. 0 = 100, <0 = no limit
	SourceRate       int           // sourcerate: datagrams/s from one address that is not a peer's; 0 = 50, <0 = no limit
	GuessRate        int           // guessrate: digest guesses/s at one peer name from away from the peer; 0 = 2, <0 = no limit

	Registrations    []Registration // register => lines: the box registers with providers (trunk.go)
	RegisterTimeout  time.Duration  // registertimeout: retry after a failed registration; 20 s
	RegisterAttempts int            // registerattempts: give up after this many failures; 0 = never
	// LineIdleGrace is how long an answered call may go on while the modem
	// line behind one of its peers carries no call; 0 = 30 s.
	LineIdleGrace time.Duration
}

// ACLRule is one permit= or deny= line.
type ACLRule struct {
	Permit bool
	Prefix netip.Prefix
}

// Peer is one sip.conf device section.
type Peer struct {
	Name        string
	Type        string // friend, peer, user
	Context     string // context for calls from this peer; "default"
	Secret      string // digest password; empty = no auth (chan_sip: "Always OK if no secret")
	MD5Secret   string // md5secret: hex MD5(user:realm:secret)
	Username    string // defaultuser / username
	Host        string // "dynamic" or a fixed host[:port]
	DefaultIP   netip.Addr
	Port        int
	Qualify     int // maxms: 0 = off (Unmonitored); qualify=yes is 2000
	QualifyFreq time.Duration
	DirectMedia bool     // directmedia / canreinvite; yes
	RegExten    string   // regexten
	NAT         string   // nat= as written: no, force_rport, comedia, auto_force_rport, auto_comedia, yes
	Insecure    string   // insecure= port, invite, "port,invite"
	Allow       []string // codec policy in preference order ("ulaw", "alaw"); empty = pass everything
	ACL         []ACLRule
	CallLimit   int // call-limit / busylevel; 0 = no limit
	Description string
	MaxForwards int
	HuntGroup   string // extension to the config: name of a hunt group this peer belongs to
	// Trunk (provider) peers, chan_sip's meaning: the From user and domain
	// of calls to the peer, and a proxy every request to it goes through.
	FromUser      string
	FromDomain    string
	OutboundProxy string // host[:port]
	// RFC 4028 session timers (chan_sip's keys; [general] gives every
	// peer's default). Without them the box probes the dialog with OPTIONS
	// every SessionExpires/2.
	SessionTimers    string        // session-timers: accept (default), originate, refuse
	SessionExpires   time.Duration // session-expires; 1800 s
	SessionMinSE     time.Duration // session-minse; 90 s
	SessionRefresher string        // session-refresher: uas (default: the box refreshes) or uac
	RTPTimeout       time.Duration // rtptimeout: relayed call ends after this long without RTP/RTCP from the peer; 0 = off
	RTPHoldTimeout   time.Duration // rtpholdtimeout: the same while the peer has the call on hold; 0 = off
	File             string        // where the section starts
	Line             int
}

// DefaultConfig returns chan_sip's defaults with no peers.
func DefaultConfig() Config {
	return Config{General: General{
		UDPBindAddr:      netip.MustParseAddrPort("0.0.0.0:5060"),
		Realm:            "asterisk",
		DefaultExpiry:    120 * time.Second,
		MinExpiry:        60 * time.Second,
		MaxExpiry:        3600 * time.Second,
		QualifyFreq:      60 * time.Second,
		AlwaysAuthReject: true,
		AllowGuest:       true,
		Context:          "default",
		MaxAuthFailures:  10,
		BanTime:          5 * time.Minute,
		UserAgent:        "isp-box",
		RTPStart:         10000,
		RTPEnd:           20000,
		MaxCalls:         100,
		SourceRate:       50,
		GuessRate:        2,
	}}
}

// DefaultPeer returns a peer section's defaults (chan_sip's).
func DefaultPeer(name string) Peer {
	return Peer{Name: name, Type: "friend", Context: "default", DirectMedia: true, NAT: "auto_force_rport", MaxForwards: 70,
		SessionTimers: timersAccept, SessionExpires: defaultSessionExpires, SessionMinSE: defaultSessionMinSE, SessionRefresher: "uas"}
}

func withDefaults(cfg Config) Config {
	d := DefaultConfig().General
	g := &cfg.General
	if g.Realm == "" {
		g.Realm = d.Realm
	}
	// chan_sip: values < 1 reset to the default (C 33049-33063)
	orDefault(&g.DefaultExpiry, d.DefaultExpiry)
	orDefault(&g.MinExpiry, d.MinExpiry)
	orDefault(&g.MaxExpiry, d.MaxExpiry)
	orDefault(&g.QualifyFreq, d.QualifyFreq)
	orDefault(&g.MaxAuthFailures, d.MaxAuthFailures)
	orDefault(&g.BanTime, d.BanTime)
	if g.UserAgent == "" {
		g.UserAgent = d.UserAgent
	}
	if g.RTPStart <= 0 || g.RTPEnd <= g.RTPStart {
		g.RTPStart, g.RTPEnd = d.RTPStart, d.RTPEnd
	}
	if g.Context == "" {
		g.Context = d.Context
	}
	if g.MaxCalls == 0 {
		g.MaxCalls = d.MaxCalls
	}
	if g.SourceRate == 0 {
		g.SourceRate = d.SourceRate
	}
	if g.GuessRate == 0 {
		g.GuessRate = d.GuessRate
	}
	return cfg
}

// orDefault sets *v to d when *v is below 1.
func orDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// compileConfig checks the config and builds the peer table.
func compileConfig(cfg Config) (*dialplan.Plan, map[string]*peer, error) {
	var errs []error
	plan, err := dialplan.Compile(cfg.Dialplan)
	if err != nil {
		errs = append(errs, err)
	}
	peers := map[string]*peer{}
	groups := map[string]bool{}
	for _, p := range cfg.Peers {
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("%s:%d: peer without a name", p.File, p.Line))
			continue
		}
		if _, dup := peers[p.Name]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: peer [%s] defined twice", p.File, p.Line, p.Name))
			continue
		}
		if p.QualifyFreq <= 0 {
			p.QualifyFreq = withDefaults(cfg).General.QualifyFreq
		}
		if p.MaxForwards <= 0 {
			p.MaxForwards = 70
		}
		if p.Context == "" {
			p.Context = "default"
		}
		peers[p.Name] = &peer{cfg: p}
		if p.HuntGroup != "" {
			groups[p.HuntGroup] = true
		}
	}
	if plan != nil {
		for _, t := range plan.Targets() {
			switch {
			case t.Tech == "SIP" && peers[t.Resource] == nil:
				errs = append(errs, &dialplan.Error{File: t.File, Line: t.Line, Msg: fmt.Sprintf("Dial(%s): no such peer [%s]", t, t.Resource)})
			case t.Tech == "HUNT" && !groups[t.Resource]:
				errs = append(errs, &dialplan.Error{File: t.File, Line: t.Line, Msg: fmt.Sprintf("Dial(%s): no peer has huntgroup=%s", t, t.Resource)})
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return plan, peers, nil
}
