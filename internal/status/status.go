// Package status defines, once, the snapshots the components give of
// themselves: a SIP peer, call and outbound registration (pbx), a modem
// line (modem), a PPP session (ppp) and the network side (netstack).
//
// A component returns these values and they travel unchanged to the
// control socket's JSON, the CLI's tables, the status page and /metrics,
// so a field a component adds reaches all of them without a copy that
// could drop it. They live here, not in each component, because the
// console, the web page and the metrics may not import the components
// (see ARCHITECTURE.md: what may import what); the components name them
// through aliases (pbx.PeerInfo, modem.LineStatus, ppp.SessionInfo, ...).
//
// The JSON names are the control socket's since its first version. Every
// field has one (TestJSONNames), and cmd/isp-box's TestJSONGolden fails
// when a field does not reach the CLI's --json.
package status

import (
	"net/netip"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
)

// Peer is one SIP peer as `sip show peers` and `sip show peer` need it.
type Peer struct {
	Name        string     `json:"name"`
	Username    string     `json:"username"`    // from config, else the REGISTER Contact user
	Type        string     `json:"type"`        // friend, peer, user
	Host        netip.Addr `json:"host"`        // registered (or fixed) address; invalid ("") if none
	Port        int        `json:"port"`        // 0 if none
	Dynamic     bool       `json:"dynamic"`     // host=dynamic
	ForceRport  string     `json:"force_rport"` // "Yes", "No", "Auto (Yes)", "Auto (No)"
	Comedia     string     `json:"comedia"`     // same values
	ACL         bool       `json:"acl"`         // permit/deny set
	Status      string     `json:"status"`      // chan_sip's string: "OK (7 ms)", "UNREACHABLE", ...
	Monitored   bool       `json:"monitored"`   // qualify on
	Online      bool       `json:"online"`      // counted online in the summary line
	Description string     `json:"description"`
	Context     string     `json:"context"`
	SecretSet   bool       `json:"secret_set"`
	DirectMedia bool       `json:"directmedia"`
	Insecure    string     `json:"insecure"`
	Codecs      []string   `json:"codecs"`
	UserAgent   string     `json:"useragent"`
	Contact     string     `json:"contact"`        // Reg. Contact
	Expires     time.Time  `json:"expires"`        // registration expiry; zero if none
	QualifyMS   int        `json:"qualify_ms"`     // qualify= (chan_sip's maxms)
	QualifyFreq int        `json:"qualifyfreq_ms"` // qualifyfreq, in ms as `sip show peer` prints it
	RTTMS       int        `json:"rtt_ms"`         // chan_sip's lastms: -1 unreachable, 0 unknown, else the last RTT rounded up
	LineBusy    bool       `json:"line_busy"`      // the modem line behind this peer is busy or down
	Calls       int        `json:"calls"`          // live calls through this peer
	CallLimit   int        `json:"call_limit"`     // call-limit=, 0 = none
	MaxForwards int        `json:"max_forwards"`   // maxforwards=
}

// Call is one live call, both legs.
type Call struct {
	ID        string         `json:"id"`
	From      string         `json:"from"`  // calling peer
	Exten     string         `json:"exten"` // dialled number
	To        string         `json:"to"`    // callee peer
	State     bus.CallStatus `json:"state"` // routing, ringing, up
	Start     time.Time      `json:"start"`
	Answer    time.Time      `json:"answer"` // zero until answered
	MediaMode string         `json:"media"`  // direct or relay
	Codec     string         `json:"codec"`
	CallerLeg string         `json:"caller_leg"` // Call-ID of the caller's dialog
	CalleeLeg string         `json:"callee_leg"` // Call-ID of the callee's dialog
	// RelayCaller and RelayCallee are the box's media addresses facing each
	// side when media is relayed; invalid ("") with direct media.
	RelayCaller netip.AddrPort `json:"relay_caller"`
	RelayCallee netip.AddrPort `json:"relay_callee"`
	Packets     uint64         `json:"packets"` // relayed RTP packets, both directions
	Lost        uint64         `json:"lost"`
	JitterMS    float64        `json:"jitter_ms"` // worst of the two directions
	// Modem is the box's own modem's view of a Modem(answer) call: its
	// modulation, rate and line figures; nil on other calls.
	Modem *bus.ModemStats `json:"modem,omitempty"`
}

// Registration is one outbound registration (register => in [general]),
// as `sip show registry` lists it.
type Registration struct {
	Host      string    `json:"host"`      // host:port registered with
	Username  string    `json:"username"`  // the user registered
	Extension string    `json:"extension"` // the Contact's user: what calls from the provider ask for
	Refresh   int       `json:"refresh"`   // seconds the registrar granted
	State     string    `json:"state"`     // Registered, Request Sent, Auth. Sent, Rejected, Timeout, ...
	RegTime   time.Time `json:"reg_time"`  // last successful registration; zero = never
	LastError string    `json:"last_error,omitempty"`
	Attempts  int       `json:"attempts,omitempty"` // consecutive failures
}

// Line is one modem line (or one connection of a TCP line).
type Line struct {
	Name        string    `json:"name"`
	Device      string    `json:"device"`       // configured device path, "tcp ADDR" for a TCP line
	Peer        string    `json:"peer"`         // SIP peer the line sits behind
	State       string    `json:"state"`        // opening, resetting, ..., connected, hangingup, down (bus.LineStatus)
	Since       time.Time `json:"since"`        // when State was entered
	LastConnect string    `json:"last_connect"` // the last CONNECT line
	Speed       int       `json:"speed"`        // line rate of the current or last call, bit/s
	Protocol    string    `json:"protocol"`     // its error correction/compression: "ARQ", "V42BIS", ...
	CallerID    string    `json:"caller_id"`    // of the current call
	CallID      string    `json:"call"`         // the SIP call tied to the current call
	Session     string    `json:"session"`      // "ttyUSB0/3": the line's n-th session
	User        string    `json:"user"`         // logged-in user of the current session ("" for AutoPPP)
	Answered    int       `json:"answered"`     // calls answered (CONNECT) since start
	Errors      int       `json:"errors"`       // errors reported
	LastError   string    `json:"last_error"`   // the last of them
	Caps        string    `json:"caps"`         // what the port has: "modem lines", "pty: no DCD/DTR", ...
	// Pending says a reloaded config waits to be applied, and for what;
	// "" when the running config is the latest.
	Pending string `json:"pending,omitempty"`
	// Modem is, on the line of a call the box's own modem answered
	// (softmodem/<call>), that modem's figures (the PBX's, not modem's).
	Modem *bus.ModemStats `json:"modem,omitempty"`
}

// Session is one live PPP session.
type Session struct {
	ID       string       `json:"id"`
	Line     string       `json:"line"`          // modem line
	CallID   string       `json:"call"`          // SIP call tied to the line, when known
	CallerID string       `json:"caller"`        // who called: TCP client address, SIP caller
	User     string       `json:"user"`          // authenticated (or logged-in) user
	Phase    string       `json:"phase"`         // dead, establish, authenticate, network, running, terminate
	Detail   string       `json:"detail"`        // last phase detail
	Local    netip.Addr   `json:"local"`         // our address
	Remote   netip.Addr   `json:"remote"`        // the client's address
	DNS      []netip.Addr `json:"dns"`           // offered resolvers
	Auth     string       `json:"auth"`          // pap, chap, mschap, mschap-v2, or "" (none)
	AAA      string       `json:"aaa,omitempty"` // who authenticated the user: file, radius, login
	VJ       bool         `json:"vj"`            // VJ header compression on
	Start    time.Time    `json:"start"`         // CONNECT (session start)
	Up       time.Time    `json:"up"`            // IPCP opened (zero until then)
	BytesIn  uint64       `json:"bytes_in"`      // IP octets from the client
	BytesOut uint64       `json:"bytes_out"`     // IP octets to the client
	PktsIn   uint64       `json:"pkts_in"`
	PktsOut  uint64       `json:"pkts_out"`
	Dropped  uint64       `json:"dropped"`    // IP packets dropped
	FCSErrs  uint64       `json:"fcs_errors"` // frames with a bad FCS
}

// Network is the IP side: its mode, the flows it forwards and what it
// dropped, by reason (bus.DropReason's names).
type Network struct {
	Mode     string            `json:"mode"`     // userspace or kernel
	ICMP     string            `json:"icmp"`     // how clients' echo requests reach the world
	Flows    int               `json:"flows"`    // forwarded TCP connections and UDP flows open now (userspace)
	Dropped  map[string]uint64 `json:"dropped"`  // since start, every session, by reason
	Sessions []NetSession      `json:"sessions"` // attached sessions
}

// NetSession is one session's traffic as the network side counts it.
type NetSession struct {
	Session  string            `json:"session"`
	Remote   netip.Addr        `json:"remote"`
	Since    time.Time         `json:"since"`
	PktsIn   uint64            `json:"pkts_in"` // from the client, accepted
	BytesIn  uint64            `json:"bytes_in"`
	PktsOut  uint64            `json:"pkts_out"` // to the client
	BytesOut uint64            `json:"bytes_out"`
	Flows    int               `json:"flows"`   // userspace: forwarded TCP connections and UDP flows open now
	Dropped  uint64            `json:"dropped"` // from the client, dropped for any reason
	Reasons  map[string]uint64 `json:"reasons"` // Dropped by reason
}
