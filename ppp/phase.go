package ppp

// Phase is the link's RFC 1661 §3.2 phase.
type Phase uint8

// Phases.
const (
	PhaseDead Phase = iota
	PhaseEstablish
	PhaseAuthenticate
	PhaseNetwork
	PhaseRunning // IPCP opened
	PhaseTerminate
)

var phaseNames = [...]string{"dead", "establish", "authenticate", "network", "running", "terminate"}

// String names the phase as bus.PPPPhase carries it.
func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase?"
}

// Terminate causes (Record.Cause, bus.PPPDown.Cause).
const (
	CauseCarrier     = "carrier lost"
	CausePeer        = "peer terminated"
	CauseEcho        = "peer not responding"
	CauseIdle        = "idle"
	CauseMaxConnect  = "maxconnect"
	CauseShutdown    = "shutdown"
	CauseAuth        = "authentication failed"
	CauseLCP         = "LCP negotiation failed"
	CauseNoNetwork   = "no network protocols running"
	CauseLoopback    = "line looped back"
	CauseNoAddress   = "no address"
	CauseLocalClose  = "closed"
	CauseAuthRefused = "peer refused to authenticate"
)
