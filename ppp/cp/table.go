package cp

import "strings"

// State is one of the automaton's ten states (RFC 1661 §4.2).
//
//	Initial ─Up→ Closed ─Open→ Req-Sent ⇄ Ack-Rcvd / Ack-Sent → Opened
//	   │Open                      │ Close                      │ Close
//	Starting ─Up→ Req-Sent     Closing → Closed            Closing
//	(Stopped/Stopping: the link went down under us or the peer terminated)
type State uint8

// The states, numbered as in the RFC's table.
const (
	Initial State = iota
	Starting
	Closed
	Stopped
	Closing
	Stopping
	ReqSent
	AckRcvd
	AckSent
	Opened
	numStates
)

var stateNames = [numStates]string{"Initial", "Starting", "Closed", "Stopped", "Closing", "Stopping",
	"Req-Sent", "Ack-Rcvd", "Ack-Sent", "Opened"}

// String names the state as RFC 1661 does.
func (s State) String() string { return nameOr(stateNames[:], s, "State?") }

// Event is an input to the automaton (RFC 1661 §4.3).
type Event uint8

// The events, in the order of the RFC's table.
const (
	Up       Event = iota // lower layer is Up
	Down                  // lower layer is Down
	Open                  // administrative Open
	Close                 // administrative Close
	TOPlus                // Timeout with counter > 0
	TOMinus               // Timeout with counter expired
	RCRPlus               // Receive-Configure-Request (Good)
	RCRMinus              // Receive-Configure-Request (Bad)
	RCA                   // Receive-Configure-Ack
	RCN                   // Receive-Configure-Nak/Rej
	RTR                   // Receive-Terminate-Request
	RTA                   // Receive-Terminate-Ack
	RUC                   // Receive-Unknown-Code
	RXJPlus               // Receive-Code-Reject (permitted) or Receive-Protocol-Reject
	RXJMinus              // Receive-Code-Reject (catastrophic) or Receive-Protocol-Reject
	RXR                   // Receive-Echo-Request, Echo-Reply or Discard-Request
	numEvents
)

var eventNames = [numEvents]string{"Up", "Down", "Open", "Close", "TO+", "TO-", "RCR+", "RCR-",
	"RCA", "RCN", "RTR", "RTA", "RUC", "RXJ+", "RXJ-", "RXR"}

// String names the event as RFC 1661's table does.
func (e Event) String() string { return nameOr(eventNames[:], e, "Event?") }

// nameOr returns v's name in names, or unknown for a value beyond the
// table (a conversion from a number, not one of the constants).
func nameOr[T ~uint8](names []string, v T, unknown string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return unknown
}

// Action is a set of the RFC's actions (§4.4), applied in the order of the
// constants below, which is the order the RFC writes them in its cells.
type Action uint16

// Actions.
const (
	TLD        Action = 1 << iota // This-Layer-Down
	IRC                           // Initialize-Restart-Count
	ZRC                           // Zero-Restart-Count
	SCR                           // Send-Configure-Request
	SCA                           // Send-Configure-Ack
	SCN                           // Send-Configure-Nak/Rej
	STR                           // Send-Terminate-Request
	STA                           // Send-Terminate-Ack
	SCJ                           // Send-Code-Reject
	SER                           // Send-Echo-Reply
	TLU                           // This-Layer-Up
	TLS                           // This-Layer-Started
	TLF                           // This-Layer-Finished
	numActions = iota
)

var actionNames = [numActions]string{"tld", "irc", "zrc", "scr", "sca", "scn", "str", "sta", "scj", "ser", "tlu", "tls", "tlf"}

// String lists the actions as the RFC writes a cell: "irc,scr".
func (a Action) String() string {
	var parts []string
	for i := range numActions {
		if a&(1<<i) != 0 {
			parts = append(parts, actionNames[i])
		}
	}
	return strings.Join(parts, ",")
}

// Note is one of the table's footnotes (RFC 1661 §4.1).
type Note uint8

// Footnotes. They document implementation options; this automaton takes
// none of them (no passive or restart option), as pppd by default.
const (
	NoteNone    Note = 0
	NotePassive Note = 'p' // [p] Passive option
	NoteRestart Note = 'r' // [r] Restart option
	NoteCrossed Note = 'x' // [x] Crossed connection
)

// Transition is one cell of the table.
type Transition struct {
	Legal bool // false: "-", the event cannot happen in this state
	Next  State
	Act   Action
	Note  Note
}

// String renders the cell as the RFC writes it: "irc,scr/6", "3r", "-".
func (t Transition) String() string {
	if !t.Legal {
		return "-"
	}
	s := string(rune('0' + t.Next))
	if t.Act != 0 {
		s = t.Act.String() + "/" + s
	}
	if t.Note != NoteNone {
		s += string(rune(t.Note))
	}
	return s
}

func to(next State, act Action) Transition { return Transition{Legal: true, Next: next, Act: act} }
func ton(next State, act Action, n Note) Transition {
	return Transition{Legal: true, Next: next, Act: act, Note: n}
}

// table is RFC 1661 §4.1's state transition table: rows are events, columns
// states. A zero Transition is "-".
var table = [numEvents][numStates]Transition{
	Up: {Initial: to(Closed, 0), Starting: to(ReqSent, IRC|SCR)},
	Down: {Closed: to(Initial, 0), Stopped: to(Starting, TLS), Closing: to(Initial, 0), Stopping: to(Starting, 0),
		ReqSent: to(Starting, 0), AckRcvd: to(Starting, 0), AckSent: to(Starting, 0), Opened: to(Starting, TLD)},
	Open: {Initial: to(Starting, TLS), Starting: to(Starting, 0), Closed: to(ReqSent, IRC|SCR),
		Stopped: ton(Stopped, 0, NoteRestart), Closing: ton(Stopping, 0, NoteRestart), Stopping: ton(Stopping, 0, NoteRestart),
		ReqSent: to(ReqSent, 0), AckRcvd: to(AckRcvd, 0), AckSent: to(AckSent, 0), Opened: ton(Opened, 0, NoteRestart)},
	Close: {Initial: to(Initial, 0), Starting: to(Initial, TLF), Closed: to(Closed, 0), Stopped: to(Closed, 0),
		Closing: to(Closing, 0), Stopping: to(Closing, 0), ReqSent: to(Closing, IRC|STR), AckRcvd: to(Closing, IRC|STR),
		AckSent: to(Closing, IRC|STR), Opened: to(Closing, TLD|IRC|STR)},
	TOPlus: {Closing: to(Closing, STR), Stopping: to(Stopping, STR), ReqSent: to(ReqSent, SCR),
		AckRcvd: to(ReqSent, SCR), AckSent: to(AckSent, SCR)},
	TOMinus: {Closing: to(Closed, TLF), Stopping: to(Stopped, TLF), ReqSent: ton(Stopped, TLF, NotePassive),
		AckRcvd: ton(Stopped, TLF, NotePassive), AckSent: ton(Stopped, TLF, NotePassive)},
	RCRPlus: {Closed: to(Closed, STA), Stopped: to(AckSent, IRC|SCR|SCA), Closing: to(Closing, 0), Stopping: to(Stopping, 0),
		ReqSent: to(AckSent, SCA), AckRcvd: to(Opened, SCA|TLU), AckSent: to(AckSent, SCA), Opened: to(AckSent, TLD|SCR|SCA)},
	RCRMinus: {Closed: to(Closed, STA), Stopped: to(ReqSent, IRC|SCR|SCN), Closing: to(Closing, 0), Stopping: to(Stopping, 0),
		ReqSent: to(ReqSent, SCN), AckRcvd: to(AckRcvd, SCN), AckSent: to(ReqSent, SCN), Opened: to(ReqSent, TLD|SCR|SCN)},
	RCA: {Closed: to(Closed, STA), Stopped: to(Stopped, STA), Closing: to(Closing, 0), Stopping: to(Stopping, 0),
		ReqSent: to(AckRcvd, IRC), AckRcvd: ton(ReqSent, SCR, NoteCrossed), AckSent: to(Opened, IRC|TLU), Opened: ton(ReqSent, TLD|SCR, NoteCrossed)},
	RCN: {Closed: to(Closed, STA), Stopped: to(Stopped, STA), Closing: to(Closing, 0), Stopping: to(Stopping, 0),
		ReqSent: to(ReqSent, IRC|SCR), AckRcvd: ton(ReqSent, SCR, NoteCrossed), AckSent: to(AckSent, IRC|SCR), Opened: ton(ReqSent, TLD|SCR, NoteCrossed)},
	RTR: {Closed: to(Closed, STA), Stopped: to(Stopped, STA), Closing: to(Closing, STA), Stopping: to(Stopping, STA),
		ReqSent: to(ReqSent, STA), AckRcvd: to(ReqSent, STA), AckSent: to(ReqSent, STA), Opened: to(Stopping, TLD|ZRC|STA)},
	RTA: {Closed: to(Closed, 0), Stopped: to(Stopped, 0), Closing: to(Closed, TLF), Stopping: to(Stopped, TLF),
		ReqSent: to(ReqSent, 0), AckRcvd: to(ReqSent, 0), AckSent: to(AckSent, 0), Opened: to(ReqSent, TLD|SCR)},
	RUC: {Closed: to(Closed, SCJ), Stopped: to(Stopped, SCJ), Closing: to(Closing, SCJ), Stopping: to(Stopping, SCJ),
		ReqSent: to(ReqSent, SCJ), AckRcvd: to(AckRcvd, SCJ), AckSent: to(AckSent, SCJ), Opened: to(Opened, SCJ)},
	RXJPlus: {Closed: to(Closed, 0), Stopped: to(Stopped, 0), Closing: to(Closing, 0), Stopping: to(Stopping, 0),
		ReqSent: to(ReqSent, 0), AckRcvd: to(ReqSent, 0), AckSent: to(AckSent, 0), Opened: to(Opened, 0)},
	RXJMinus: {Closed: to(Closed, TLF), Stopped: to(Stopped, TLF), Closing: to(Closed, TLF), Stopping: to(Stopped, TLF),
		ReqSent: to(Stopped, TLF), AckRcvd: to(Stopped, TLF), AckSent: to(Stopped, TLF), Opened: to(Stopping, TLD|IRC|STR)},
	RXR: {Closed: to(Closed, 0), Stopped: to(Stopped, 0), Closing: to(Closing, 0), Stopping: to(Stopping, 0),
		ReqSent: to(ReqSent, 0), AckRcvd: to(AckRcvd, 0), AckSent: to(AckSent, 0), Opened: to(Opened, SER)},
}

// Step returns the table's cell for event e in state s. It is pure.
func Step(s State, e Event) Transition {
	if s >= numStates || e >= numEvents {
		return Transition{}
	}
	return table[e][s]
}
