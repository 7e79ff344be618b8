package cp

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// Handler is what a control protocol (LCP, IPCP) adds to the automaton: how
// it builds its requests, judges the peer's, and what happens on the
// This-Layer-* actions. All methods are called from the owner goroutine.
type Handler interface {
	// Request returns the options of our next Configure-Request.
	Request() Options
	// CheckRequest judges the peer's Configure-Request. It returns ConfAck
	// with the options as received, or ConfNak / ConfRej with the options to
	// send back (RFC 1661 §5.1-5.4). rejectOnly is set once Max-Failure Naks
	// have been sent: the handler must then Reject what it would have Nak'd.
	CheckRequest(opts Options, rejectOnly bool) (Code, Options)
	// Ack, Nak and Reject process the peer's answer to our request. They
	// return false if the answer is malformed or does not match what we
	// sent; the packet is then discarded (RFC 1661 §5.2-5.4).
	Ack(opts Options) bool
	Nak(opts Options) bool
	Reject(opts Options) bool
	// Extended classifies a code the automaton does not know itself (LCP's
	// Protocol-Reject, Echo, Discard, Identification...): it returns the event
	// to feed (RXJ+, RXJ-, RXR) or ok=false for Receive-Unknown-Code.
	Extended(p Packet) (ev Event, ok bool)
	// EchoReply is the ser action: answer an RXR packet in Opened.
	EchoReply(p Packet)
	// Up, Down, Started, Finished are tlu, tld, tls, tlf.
	Up()
	Down()
	Started()
	Finished()
}

// Timer is the restart timer the automaton starts and stops; the owner
// delivers its expiry by calling FSM.Timeout.
type Timer interface {
	Start(d time.Duration)
	Stop()
}

// Params are the automaton's counters and timer (RFC 1661 §4.6).
type Params struct {
	Restart      time.Duration // 3 s
	MaxConfigure int           // 10
	MaxTerminate int           // 2
	MaxFailure   int           // 5
}

// DefaultParams are RFC 1661 §4.6's suggested values, which pppd uses.
func DefaultParams() Params {
	return Params{Restart: 3 * time.Second, MaxConfigure: 10, MaxTerminate: 2, MaxFailure: 5}
}

// FSM is one instance of the RFC 1661 automaton for one protocol. It is not
// safe for concurrent use: one owner goroutine drives it.
type FSM struct {
	name  string
	h     Handler
	send  func(Packet)
	timer Timer
	log   *slog.Logger
	p     Params

	state    State
	restart  int   // restart counter
	nakLoops int   // Configure-Naks and -Rejects sent since the last Configure-Ack
	nakRcvd  int   // Configure-Naks and -Rejects received since the last Configure-Ack
	id       uint8 // last Identifier we used
	reqID    uint8 // Identifier of our outstanding Configure-Request
	answered bool  // the request reqID has had its answer
	// TermReason is the text sent in Terminate-Request data.
	TermReason string
	// Counters for the sessions list.
	Sent, Received uint64
}

// New returns an automaton in the Initial state. send transmits a packet of
// this protocol; it must not retain p.Data.
func New(name string, h Handler, send func(Packet), timer Timer, p Params, log *slog.Logger) *FSM {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if p.Restart <= 0 {
		p = DefaultParams()
	}
	return &FSM{name: name, h: h, send: send, timer: timer, p: p, log: log}
}

// State returns the current state.
func (f *FSM) State() State { return f.state }

// Up is the lower layer coming up.
func (f *FSM) Up() { f.event(Up, nil, nil) }

// Down is the lower layer going down.
func (f *FSM) Down() { f.event(Down, nil, nil) }

// Open is the administrative Open.
func (f *FSM) Open() { f.event(Open, nil, nil) }

// Close starts an orderly close; reason goes into the Terminate-Request.
func (f *FSM) Close(reason string) {
	f.TermReason = reason
	f.event(Close, nil, nil)
}

// Timeout is the restart timer's expiry (TO+ or TO-).
func (f *FSM) Timeout() {
	switch f.state {
	case Closing, Stopping, ReqSent, AckRcvd, AckSent:
	default:
		return // a stale timer
	}
	if f.restart > 0 {
		f.event(TOPlus, nil, nil)
	} else {
		f.event(TOMinus, nil, nil)
	}
}

// Input feeds one received packet of this protocol.
func (f *FSM) Input(p Packet) {
	f.Received++
	switch p.Code {
	case ConfReq:
		if f.state == Initial || f.state == Starting {
			f.illegal(RCRPlus)
			return
		}
		opts, err := ParseOptions(p.Data)
		if err != nil {
			f.log.Debug(f.name+": malformed ConfReq dropped", "err", err)
			return
		}
		switch f.state {
		case Closed, Closing, Stopping:
			// The cell is the same for RCR+ and RCR-: no need to judge.
			f.event(RCRPlus, &p, nil)
			return
		default: // the other values: after the switch
		}
		if f.nakLoops >= 2*f.p.MaxFailure && f.giveUp("the peer's Configure-Requests were Nak'd and Rejected "+strconv.Itoa(f.nakLoops)+" times") {
			return
		}
		code, reply := f.h.CheckRequest(opts, f.nakLoops >= f.p.MaxFailure)
		ev := RCRPlus
		if code != ConfAck {
			ev = RCRMinus
		}
		f.event(ev, &p, &Packet{Code: code, ID: p.ID, Data: reply.Append(nil)})
	case ConfAck, ConfNak, ConfRej:
		if p.ID != f.reqID || f.answered {
			f.log.Debug(f.name+": answer to a stale request dropped", "code", p.Code, "id", p.ID, "want", f.reqID)
			return
		}
		opts, err := ParseOptions(p.Data)
		if err != nil {
			f.log.Debug(f.name+": malformed answer dropped", "err", err)
			return
		}
		// Answers are judged only where the table acts on them; in Closed,
		// Stopped, Closing, Stopping they just get sta or nothing.
		judge := f.state == ReqSent || f.state == AckRcvd || f.state == AckSent || f.state == Opened
		ev := RCN
		ok := true
		switch p.Code {
		case ConfAck:
			ev = RCA
			if judge {
				ok = f.h.Ack(opts)
			}
		case ConfNak:
			if judge {
				ok = f.h.Nak(opts)
			}
		default:
			if judge {
				ok = f.h.Reject(opts)
			}
		}
		if !ok {
			f.log.Debug(f.name+": bad answer dropped", "code", p.Code, "id", p.ID)
			return
		}
		f.answered = true // a second answer to the same request is stale
		if ev == RCN && judge {
			// Each Nak or Reject re-arms the restart counter (RCN: irc,
			// scr), so a peer answering that way forever would hold the
			// link forever; after Max-Configure of them, give up as when
			// the counter expires.
			if f.nakRcvd++; f.nakRcvd > f.p.MaxConfigure && f.giveUp("our Configure-Request was Nak'd or Rejected "+strconv.Itoa(f.nakRcvd)+" times") {
				return
			}
		} else if ev == RCA {
			f.nakRcvd = 0
		}
		f.event(ev, &p, nil)
	case TermReq:
		f.event(RTR, &p, nil)
	case TermAck:
		f.event(RTA, &p, nil)
	case CodeRej:
		// RFC 1661 §5.6: rejecting one of the codes the automaton relies
		// on (1-7) is catastrophic; anything else is permitted.
		ev := RXJPlus
		if len(p.Data) >= 1 && Code(p.Data[0]) >= ConfReq && Code(p.Data[0]) <= CodeRej {
			ev = RXJMinus
		}
		f.event(ev, &p, nil)
	default:
		if ev, ok := f.h.Extended(p); ok {
			f.event(ev, &p, nil)
			return
		}
		f.event(RUC, &p, nil)
	}
}

// giveUp ends a negotiation that makes no progress (RFC 1661 §4.6:
// Max-Failure Naks, then Rejects, then "the connection is terminated") as an
// expired restart counter does: TO-, This-Layer-Finished, Stopped.
func (f *FSM) giveUp(why string) bool {
	switch f.state {
	case ReqSent, AckRcvd, AckSent:
	default:
		return false
	}
	f.log.Warn(f.name+": negotiation gave up: "+why, "state", f.state.String())
	f.nakLoops, f.nakRcvd = 0, 0
	f.restart = 0
	f.event(TOMinus, nil, nil)
	return true
}

func (f *FSM) illegal(e Event) {
	f.log.Debug(f.name+": illegal event ignored", "event", e.String(), "state", f.state.String())
}

// event applies the table's cell. rx is the received packet, reply our
// answer to a Configure-Request.
func (f *FSM) event(e Event, rx *Packet, reply *Packet) {
	t := Step(f.state, e)
	if !t.Legal {
		f.illegal(e)
		return
	}
	from := f.state
	f.state = t.Next
	if from != t.Next || t.Act != 0 {
		f.log.Log(context.Background(), slog.LevelDebug, f.name+": "+e.String()+" in "+from.String()+" -> "+t.Next.String(), "act", t.Act.String())
	}
	a := t.Act
	if a&TLD != 0 {
		f.h.Down()
	}
	if a&IRC != 0 {
		// §4.4: Max-Terminate when the next thing sent is a Terminate-Request.
		if a&STR != 0 {
			f.restart = f.p.MaxTerminate
		} else {
			f.restart = f.p.MaxConfigure
		}
	}
	if a&ZRC != 0 {
		f.restart = 0
		f.timer.Start(f.p.Restart)
	}
	if a&SCR != 0 {
		f.id++
		f.reqID = f.id
		f.answered = false
		f.restart--
		f.emit(Packet{Code: ConfReq, ID: f.reqID, Data: f.h.Request().Append(nil)})
		f.timer.Start(f.p.Restart)
	}
	if a&(SCA|SCN) != 0 && reply != nil {
		if reply.Code == ConfAck {
			f.nakLoops = 0
		} else {
			f.nakLoops++
		}
		f.emit(*reply)
	}
	if a&STR != 0 {
		f.id++
		f.restart--
		f.emit(Packet{Code: TermReq, ID: f.id, Data: []byte(f.TermReason)})
		f.timer.Start(f.p.Restart)
	}
	if a&STA != 0 && rx != nil {
		f.emit(Packet{Code: TermAck, ID: rx.ID})
	}
	if a&SCJ != 0 && rx != nil {
		f.id++
		b, _ := rx.Marshal()
		f.emit(Packet{Code: CodeRej, ID: f.id, Data: b})
	}
	if a&SER != 0 && rx != nil {
		f.h.EchoReply(*rx)
	}
	if a&TLU != 0 {
		f.nakLoops, f.nakRcvd = 0, 0
		f.h.Up()
	}
	if a&TLS != 0 {
		f.h.Started()
	}
	if a&TLF != 0 {
		f.h.Finished()
	}
	switch f.state {
	case Closing, Stopping, ReqSent, AckRcvd, AckSent:
	default:
		f.timer.Stop()
	}
}

func (f *FSM) emit(p Packet) {
	f.Sent++
	f.send(p)
}

// NextID returns a fresh Identifier for packets the protocol sends outside
// the automaton (Echo-Request, Protocol-Reject).
func (f *FSM) NextID() uint8 {
	f.id++
	return f.id
}

// ProtocolRejected feeds RXJ-: the peer sent an LCP Protocol-Reject for
// this protocol (RFC 1661 §5.7), so it cannot run on this link.
func (f *FSM) ProtocolRejected() { f.event(RXJMinus, nil, nil) }
