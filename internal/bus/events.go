package bus

import (
	"fmt"
	"net/netip"
	"time"
)

// The events below are shared by packages that must not import each other
// (pbx, modem, ppp, netstack). Each has a String method that reads like one
// line of `asterisk -rvvv`, which is what `isp-box console` prints.

// ---- SIP (pbx) ----

// PeerRegistered: a SIP peer registered or refreshed its binding.
type PeerRegistered struct {
	Peer      string
	Contact   string // Contact URI as registered
	Addr      netip.AddrPort
	UserAgent string
	Expires   time.Time
	Refresh   bool // true when the binding already existed at the same address
}

func (PeerRegistered) Kind() string { return "sip.registered" }
func (e PeerRegistered) String() string {
	return fmt.Sprintf("Registered SIP '%s' at %s (%s)", e.Peer, e.Addr, e.UserAgent)
}

// PeerUnregistered: a binding was removed (Expires: 0) or expired.
type PeerUnregistered struct {
	Peer   string
	Reason string // "unregister", "expired"
}

func (PeerUnregistered) Kind() string { return "sip.unregistered" }
func (e PeerUnregistered) String() string {
	return fmt.Sprintf("Unregistered SIP '%s' (%s)", e.Peer, e.Reason)
}

// PeerStatus: the qualify status of a peer changed, e.g. "OK (7 ms)".
type PeerStatus struct {
	Peer   string
	Status string // chan_sip's string: OK (N ms), LAGGED (N ms), UNREACHABLE, UNKNOWN, Unmonitored
	RTT    time.Duration
	MaxMS  int
}

func (PeerStatus) Kind() string { return "sip.peerstatus" }
func (e PeerStatus) String() string {
	// chan_sip's words: "Peer 'x' is now Reachable. (7ms / 200ms)".
	ms := (e.RTT + time.Millisecond - 1) / time.Millisecond
	switch {
	case len(e.Status) >= 2 && e.Status[:2] == "OK":
		return fmt.Sprintf("Peer '%s' is now Reachable. (%dms / %dms)", e.Peer, ms, e.MaxMS)
	case len(e.Status) >= 6 && e.Status[:6] == "LAGGED":
		return fmt.Sprintf("Peer '%s' is now Lagged. (%dms / %dms)", e.Peer, ms, e.MaxMS)
	case e.Status == "UNREACHABLE":
		return fmt.Sprintf("Peer '%s' is now UNREACHABLE!", e.Peer)
	}
	return fmt.Sprintf("Peer '%s' is now %s.", e.Peer, e.Status)
}

// AuthFailed: a SIP request failed digest authentication or an ACL.
type AuthFailed struct {
	Source netip.AddrPort
	User   string
	Method string
	Reason string
}

func (AuthFailed) Kind() string { return "sip.authfailed" }
func (e AuthFailed) String() string {
	return fmt.Sprintf("%s from '%s' failed for '%s' - %s", e.Method, e.Source, e.User, e.Reason)
}

// SourceBanned: too many failures from one address; it is ignored until Until.
type SourceBanned struct {
	Addr  netip.Addr
	Until time.Time
}

func (SourceBanned) Kind() string { return "sip.banned" }
func (e SourceBanned) String() string {
	return fmt.Sprintf("Banned %s until %s after repeated authentication failures", e.Addr, e.Until.Format(time.TimeOnly))
}

// CallStarted: an authenticated INVITE entered the dial plan.
type CallStarted struct {
	CallID  string // the box's own id of the call, e.g. "00000002"
	SIPID   string // Call-ID header of the caller's leg
	From    string // calling peer
	Exten   string // dialled number
	Context string
	Target  string // callee peer chosen by the dial plan ("" until known)
}

func (CallStarted) Kind() string { return "call.started" }
func (e CallStarted) String() string {
	if e.Target == "" {
		return fmt.Sprintf("Executing [%s@%s:1] call %s from SIP/%s", e.Exten, e.Context, e.CallID, e.From)
	}
	return fmt.Sprintf("Executing [%s@%s:1] Dial(\"SIP/%s-%s\", \"SIP/%s\")", e.Exten, e.Context, e.From, e.CallID, e.Target)
}

// CallRinging: the callee answered 180/183.
type CallRinging struct {
	CallID string
	Callee string
}

func (CallRinging) Kind() string { return "call.ringing" }
func (e CallRinging) String() string {
	return fmt.Sprintf("SIP/%s is ringing (call %s)", e.Callee, e.CallID)
}

// CallAnswered: the callee answered 200; media flows.
type CallAnswered struct {
	CallID    string
	Callee    string
	MediaMode string // "direct" or "relay"
	Codec     string
}

func (CallAnswered) Kind() string { return "call.answered" }
func (e CallAnswered) String() string {
	return fmt.Sprintf("SIP/%s answered call %s (%s media, %s)", e.Callee, e.CallID, e.MediaMode, e.Codec)
}

// CallEnded: the call is over; this is the call record the store keeps.
type CallEnded struct {
	CallID    string
	SIPID     string
	From      string
	To        string // dialled number
	Callee    string
	Start     time.Time
	Answer    time.Time // zero if never answered
	End       time.Time
	Status    string // Asterisk's DIALSTATUS: ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL
	SIPCode   int    // final response sent to the caller (200 if answered)
	HangupBy  string // "caller", "callee", "box"
	Reason    string // why the box ended it, when it did on its own (session timer, probe, line idle, RTP timeout)
	MediaMode string
	Codec     string
}

func (CallEnded) Kind() string { return "call.ended" }
func (e CallEnded) String() string {
	s := fmt.Sprintf("Call %s %s -> %s (%s) ended: %s, %d, hung up by %s", e.CallID, e.From, e.To, e.Callee, e.Status, e.SIPCode, e.HangupBy)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// ---- modem lines ----

// LineState: a modem line changed state. The pbx uses it to refuse a second
// call to a line that is busy (486) or down (503).
type LineState struct {
	Line   string // line name, e.g. "ttyUSB0"
	Peer   string // SIP peer the line sits behind ("" if none)
	State  LineStatus
	Detail string
	CallID string // the SIP call tied to this state, when known
}

func (LineState) Kind() string { return "line.state" }
func (e LineState) String() string {
	s := fmt.Sprintf("Line %s is now %s", e.Line, e.State)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// LineRing: a RING was counted on a line.
type LineRing struct {
	Line     string
	Count    int
	CallerID string
	CallID   string
}

func (LineRing) Kind() string     { return "line.ring" }
func (e LineRing) String() string { return fmt.Sprintf("Line %s RING %d", e.Line, e.Count) }

// ModemConnected: the modem said CONNECT.
type ModemConnected struct {
	Line     string
	Speed    int    // line rate in bit/s
	Protocol string // e.g. "V34/LAPM/V42BIS"
	Result   string // the whole CONNECT line
	CallID   string
}

func (ModemConnected) Kind() string     { return "modem.connected" }
func (e ModemConnected) String() string { return fmt.Sprintf("Line %s %s", e.Line, e.Result) }

// ModemError: something on a line failed (device vanished, modem silent...).
type ModemError struct {
	Line string
	Err  string
}

func (ModemError) Kind() string     { return "modem.error" }
func (e ModemError) String() string { return fmt.Sprintf("Line %s: %s", e.Line, e.Err) }

// ---- PPP ----

// PPPPhase: a session entered an RFC 1661 phase or a protocol changed state.
type PPPPhase struct {
	Session string
	Line    string
	Phase   LinkPhase
	Detail  string // e.g. "LCP Opened", "PAP ok for dial"
}

func (PPPPhase) Kind() string { return "ppp.phase" }
func (e PPPPhase) String() string {
	return fmt.Sprintf("PPP %s on %s: %s %s", e.Session, e.Line, e.Phase, e.Detail)
}

// PPPUp: IPCP opened; the client has an address.
type PPPUp struct {
	Session string
	Line    string
	User    string
	Local   netip.Addr
	Remote  netip.Addr
	DNS     []netip.Addr
	CallID  string
	// CallerID is who called: a TCP line's client address, the SIP caller
	// of a modem call (the modem's caller ID, else the From of the SIP
	// call the bus tied to the line), "" when unknown.
	CallerID string
}

func (PPPUp) Kind() string { return "ppp.up" }
func (e PPPUp) String() string {
	return fmt.Sprintf("PPP %s on %s up: user %q local %s remote %s dns %v", e.Session, e.Line, e.User, e.Local, e.Remote, e.DNS)
}

// PPPDown: a session ended; this is the accounting record the store keeps.
type PPPDown struct {
	Session   string
	Line      string
	User      string
	Remote    netip.Addr
	Start     time.Time
	End       time.Time
	BytesIn   uint64 // from the client
	BytesOut  uint64 // to the client
	PktsIn    uint64
	PktsOut   uint64
	Dropped   uint64 // packets PPP dropped (over the MRU, no network yet, a full queue)
	FCSErrors uint64 // frames with a bad FCS (line noise)
	Cause     string // e.g. "carrier lost", "peer terminated", "echo timeout", "idle", "shutdown"
	CallID    string
	CallerID  string // as in PPPUp
}

func (PPPDown) Kind() string { return "ppp.down" }
func (e PPPDown) String() string {
	return fmt.Sprintf("PPP %s on %s down after %s: %s (in %d B, out %d B)", e.Session, e.Line, e.End.Sub(e.Start).Round(time.Second), e.Cause, e.BytesIn, e.BytesOut)
}

// ---- network ----

// NetDropped: netstack dropped a packet for a reason worth counting (spoofed
// source, isolation...). Published at most once per second per session.
type NetDropped struct {
	Session string
	Reason  DropReason
	Count   uint64
}

func (NetDropped) Kind() string { return "net.dropped" }
func (e NetDropped) String() string {
	return fmt.Sprintf("Net: session %s dropped %d packets: %s", e.Session, e.Count, e.Reason)
}

// ---- box ----

// Notice is a free-form message from the box itself (config reloaded, part
// started or stopped...).
type Notice struct {
	Source string
	Text   string
}

func (Notice) Kind() string     { return "box.notice" }
func (e Notice) String() string { return e.Source + ": " + e.Text }

// ModemStats: the quality of a call the box answers with its own software
// modem (dial plan Modem()), published when it connects, every few
// seconds, and when it ends.
//
// It is also the softmodem's part of a call's, a line's and a session's
// status (`calls`, `lines`, `sessions`), hence the JSON names.
type ModemStats struct {
	CallID     string  `json:"call"`
	Modulation string  `json:"modulation"` // "V.22bis"
	Rate       int     `json:"rate"`       // bit/s, 0 before the handshake ends
	State      string  `json:"state"`      // "answer tone", "training", "data", "carrier lost"
	SNR        float64 `json:"snr_db"`     // the line's SNR estimate (V.22/V.22bis)
	EQMSE      float64 `json:"eq_mse"`     // equaliser MSE relative to the symbol power
	Retrains   int     `json:"retrains"`
	RxLevel    float64 `json:"rx_level_dbm0"`
	RTPLost    uint64  `json:"rtp_lost"`
	RTPJitter  float64 `json:"rtp_jitter_ms"`
	RTPLate    uint64  `json:"rtp_late"` // packets that came after their playout time
	BytesIn    int64   `json:"bytes_in"` // data bytes from the caller's modem
	BytesOut   int64   `json:"bytes_out"`
	Final      bool    `json:"final,omitempty"`
}

func (ModemStats) Kind() string { return "modem.stats" }
func (e ModemStats) String() string {
	return fmt.Sprintf("softmodem call %s: %s %d bit/s %s, SNR %.1f dB, EQ MSE %.4f, %d retrains, RTP lost %d late %d jitter %.1f ms, %d bytes in %d out",
		e.CallID, e.Modulation, e.Rate, e.State, e.SNR, e.EQMSE, e.Retrains, e.RTPLost, e.RTPLate, e.RTPJitter, e.BytesIn, e.BytesOut)
}
