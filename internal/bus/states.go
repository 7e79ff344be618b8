package bus

// The states events carry, each defined once with what it means. They are
// strings underneath so that JSON, stored records and the console show
// the same words as before.

// LineStatus is where a modem line is (modem.State's names, lower case).
type LineStatus string

// Line states, in the order a call goes through them.
const (
	LineOpening      LineStatus = "opening"
	LineResetting    LineStatus = "resetting"
	LineInitialising LineStatus = "initialising"
	LineIdle         LineStatus = "idle"
	LineRinging      LineStatus = "ringing"
	LineAnswering    LineStatus = "answering"
	LineConnected    LineStatus = "connected"
	LineHangingup    LineStatus = "hangingup"
	LineDown         LineStatus = "down"
)

// Busy reports whether the line cannot take a new call in this state:
// only an idle line, or one ringing for the call being offered, can.
func (s LineStatus) Busy() bool {
	switch s {
	case LineIdle, LineRinging:
		return false
	default: // every other state is busy
	}
	return true
}

// InCall reports whether the line carries a call that stopping the line
// would drop.
func (s LineStatus) InCall() bool {
	switch s {
	case LineRinging, LineAnswering, LineConnected, LineHangingup:
		return true
	default: // not in a call
	}
	return false
}

// CallStatus is where a SIP call is, as `isp-box calls` shows it.
type CallStatus string

// Call states.
const (
	CallStatusRouting CallStatus = "routing" // the dial plan runs
	CallStatusRinging CallStatus = "ringing" // a callee sent 180/183
	CallStatusUp      CallStatus = "up"      // answered and bridged
)

// LinkPhase is a PPP link's RFC 1661 §3.2 phase; running means IPCP is
// open (the client has an address).
type LinkPhase string

// Link phases.
const (
	LinkDead         LinkPhase = "dead"
	LinkEstablish    LinkPhase = "establish"
	LinkAuthenticate LinkPhase = "authenticate"
	LinkNetwork      LinkPhase = "network"
	LinkRunning      LinkPhase = "running"
	LinkTerminate    LinkPhase = "terminate"
)

// DropReason says why netstack dropped a packet. The value is a stable
// metric name (label-safe, never reworded); String is for people.
type DropReason string

// Drop reasons.
const (
	DropSpoofed    DropReason = "spoofed"
	DropIsolated   DropReason = "isolated"
	DropMalformed  DropReason = "malformed"
	DropNoRoute    DropReason = "no_route"
	DropForbidden  DropReason = "forbidden"
	DropPingDenied DropReason = "ping_denied"
	DropTTL        DropReason = "ttl_expired"
	DropFlowLimit  DropReason = "flow_limit"
)

var dropText = map[DropReason]string{
	DropSpoofed:    "spoofed source address",
	DropIsolated:   "client isolation",
	DropMalformed:  "malformed or not IPv4",
	DropNoRoute:    "no route to destination",
	DropForbidden:  "destination forbidden by policy",
	DropPingDenied: "ICMP echo to the world not permitted (net.ipv4.ping_group_range, CAP_NET_RAW)",
	DropTTL:        "TTL expired",
	DropFlowLimit:  "flow limit reached",
}

// Metric is the reason's counter name under net.dropped (e.g.
// "net.dropped.no_route").
func (r DropReason) Metric() string { return "net.dropped." + string(r) }

func (r DropReason) String() string {
	if t, ok := dropText[r]; ok {
		return t
	}
	return string(r)
}
