package console

import (
	"time"

	"github.com/isp-box/isp-box/internal/bus"
)

// Status is the one status type shared by the daemon and the CLI: the
// daemon fills it (internal/box maps each part's own snapshot onto it) and
// serves it as JSON at GET /v1/status; the CLI decodes it and renders tables.
type Status struct {
	Version  string        `json:"version"`            // isp-box version
	Started  time.Time     `json:"started"`            // when the daemon started
	Config   string        `json:"config"`             // config file path
	Network  string        `json:"network"`            // network mode: userspace or kernel
	SIPAddr  string        `json:"sip_addr"`           // address the PBX listens on
	Peers    []PeerRow     `json:"peers"`              // SIP peers, sorted by name
	Calls    []CallRow     `json:"calls"`              // live calls
	Lines    []LineRow     `json:"lines"`              // modem lines in config order
	Sessions []SessionRow  `json:"sessions"`           // live PPP sessions
	Registry []RegistryRow `json:"registry,omitempty"` // outbound SIP registrations (register =>)
	Counters []Counter     `json:"counters"`           // named counters (drops by reason, ...)
	Bans     []BanRow      `json:"bans"`               // SIP source addresses banned after failed logins
	Bus      BusStats      `json:"bus"`                // event bus health
}

// PeerRow is one SIP peer as `sip show peers` / `sip show peer` need it.
type PeerRow struct {
	Name        string    `json:"name"`
	Username    string    `json:"username"`    // from config or the REGISTER Contact user
	Host        string    `json:"host"`        // registered address, "" if none
	Port        int       `json:"port"`        // 0 if none
	Dynamic     bool      `json:"dynamic"`     // host=dynamic
	ForceRport  string    `json:"force_rport"` // "Yes", "No", "Auto (Yes)", "Auto (No)"
	Comedia     string    `json:"comedia"`     // same values
	ACL         bool      `json:"acl"`         // permit/deny set
	Status      string    `json:"status"`      // chan_sip string: "OK (7 ms)", "UNREACHABLE", ...
	Monitored   bool      `json:"monitored"`   // qualify on
	Online      bool      `json:"online"`      // counted online in the summary line
	Description string    `json:"description"`
	Type        string    `json:"type"` // friend, peer, user
	Context     string    `json:"context"`
	Secret      bool      `json:"secret_set"`
	DirectMedia bool      `json:"directmedia"`
	Insecure    string    `json:"insecure"`
	Codecs      []string  `json:"codecs"`
	UserAgent   string    `json:"useragent"`
	Contact     string    `json:"contact"`    // Reg. Contact
	Expires     time.Time `json:"expires"`    // registration expiry; zero if none
	QualifyMS   int       `json:"qualify_ms"` // maxms
	QualifyFreq int       `json:"qualifyfreq_ms"`
	RTTMS       int       `json:"rtt_ms"`       // last RTT, -1 unreachable
	LineBusy    bool      `json:"line_busy"`    // the modem line behind this peer is busy or down
	Calls       int       `json:"calls"`        // live calls through this peer
	CallLimit   int       `json:"call_limit"`   // call-limit=, 0 = none
	MaxForwards int       `json:"max_forwards"` // maxforwards=
}

// CallRow is one live call (both legs).
type CallRow struct {
	ID        string    `json:"id"`
	From      string    `json:"from"`  // calling peer
	Exten     string    `json:"exten"` // dialled number
	To        string    `json:"to"`    // callee peer
	State     string    `json:"state"` // routing, ringing, up, ending
	Start     time.Time `json:"start"`
	Answer    time.Time `json:"answer"`
	MediaMode string    `json:"media"` // direct or relay
	Codec     string    `json:"codec"`
	CallerLeg string    `json:"caller_leg"` // Call-ID of the caller's leg
	CalleeLeg string    `json:"callee_leg"` // Call-ID of the callee's leg
	Packets   uint64    `json:"packets"`    // relayed RTP packets (relay mode)
	Lost      uint64    `json:"lost"`
	JitterMS  float64   `json:"jitter_ms"`
}

// LineRow is one modem line.
type LineRow struct {
	Name        string    `json:"name"`
	Device      string    `json:"device"`
	Peer        string    `json:"peer"`
	State       string    `json:"state"`
	Since       time.Time `json:"since"`
	LastConnect string    `json:"last_connect"` // last CONNECT line
	Session     string    `json:"session"`      // current PPP session id
	CallID      string    `json:"call"`         // SIP call tied to the line
	Answered    int       `json:"answered"`     // calls answered
	Errors      int       `json:"errors"`
	LastError   string    `json:"last_error"`
	Caps        string    `json:"caps"`              // what the port has: "modem-lines", "pty (no DCD/DTR)"...
	Pending     string    `json:"pending,omitempty"` // a reloaded config not applied yet, and when it will be
}

// SessionRow is one live PPP session.
type SessionRow struct {
	ID       string    `json:"id"`
	Line     string    `json:"line"`
	User     string    `json:"user"`
	Phase    string    `json:"phase"`
	Local    string    `json:"local"`
	Remote   string    `json:"remote"`
	Auth     string    `json:"auth"`
	Start    time.Time `json:"start"`
	BytesIn  uint64    `json:"bytes_in"`
	BytesOut uint64    `json:"bytes_out"`
	PktsIn   uint64    `json:"pkts_in"`
	PktsOut  uint64    `json:"pkts_out"`
	VJ       bool      `json:"vj"`
	AAA      string    `json:"aaa,omitempty"`  // who authenticated the user: file, radius, login
	Acct     string    `json:"acct,omitempty"` // RADIUS accounting state: "start sent", "2 queued: timeout", ...
}

// BanRow is one banned SIP source address (`isp-box unban ADDR` lifts it).
type BanRow struct {
	Addr  string    `json:"addr"`
	Until time.Time `json:"until"`
}

// UnbanResult is the answer of POST /v1/unban.
type UnbanResult struct {
	Addr   string `json:"addr"`
	Lifted bool   `json:"lifted"` // false: it was not banned
}

// Counter is one named counter.
type Counter struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// BusStats is the event bus's health as the console shows it.
type BusStats struct {
	Published   uint64         `json:"published"`
	Subscribers []bus.SubStats `json:"subscribers"`
}

// RegistryRow is one outbound registration, as `sip show registry` lists it.
type RegistryRow struct {
	Host      string    `json:"host"`      // host:port registered with
	Username  string    `json:"username"`  // the user registered
	Extension string    `json:"extension"` // the Contact's user: what calls from the provider ask for
	Refresh   int       `json:"refresh"`   // seconds the registrar granted
	State     string    `json:"state"`     // Registered, Request Sent, Auth. Sent, Rejected, Timeout, ...
	RegTime   time.Time `json:"reg_time"`  // last successful registration; zero = never
	LastError string    `json:"last_error,omitempty"`
	Attempts  int       `json:"attempts,omitempty"` // consecutive failures
}
