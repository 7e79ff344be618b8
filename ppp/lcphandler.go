package ppp

import (
	"encoding/binary"
	"errors"

	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/hdlc"
	"github.com/isp-box/isp-box/ppp/ipcp"
	"github.com/isp-box/isp-box/ppp/lcp"
)

// ---- LCP echo, idle ----

func (s *session) startEcho() {
	s.echoOut = 0
	if s.cfg.EchoInterval > 0 {
		s.setTimer(tEcho, s.cfg.EchoInterval)
	}
}

func (s *session) echoTick() {
	if s.lcp.State() != cp.Opened || s.cfg.EchoInterval <= 0 {
		return
	}
	if s.cfg.EchoFailure > 0 && s.echoOut >= s.cfg.EchoFailure {
		// pppd LcpLinkFailure: "No response to N echo-requests".
		s.log.Warn("no response to echo-requests", "count", s.echoOut)
		s.terminate(CauseEcho, "Peer not responding")
		return
	}
	// lcp-echo-adaptive: traffic from the peer proves it alive.
	if s.cfg.EchoAdaptive && s.rxSinceEcho {
		s.echoOut = 0
	} else {
		s.echoOut++
		d := binary.BigEndian.AppendUint32(nil, s.magic)
		s.sendCP(lcp.Protocol, cp.Packet{Code: cp.EchoReq, ID: s.lcp.NextID(), Data: d})
	}
	s.rxSinceEcho = false
	s.setTimer(tEcho, s.cfg.EchoInterval)
}

func (s *session) idleTick() {
	if s.cfg.Idle <= 0 || s.phase != PhaseRunning {
		return
	}
	if idle := s.clock.Now().Sub(s.lastIP); idle >= s.cfg.Idle {
		s.terminate(CauseIdle, "Idle timeout")
		return
	} else {
		s.setTimer(tIdle, s.cfg.Idle-idle)
	}
}

// ---- option negotiation (common to LCP and IPCP) ----

// optHandler is the option half of a cp.Handler, alike for LCP and IPCP:
// it hands the peer's request and its answers to ours to the role.
type optHandler struct {
	s           *session
	request     func(*session) cp.Options
	check       func(*session, cp.Options, bool) (cp.Code, cp.Options)
	nak, reject func(*session, cp.Options)
}

func (h optHandler) Request() cp.Options { return h.request(h.s) }
func (h optHandler) CheckRequest(o cp.Options, rej bool) (cp.Code, cp.Options) {
	return h.check(h.s, o, rej)
}

// Ack: RFC 1661 §5.2: the Ack must repeat our request exactly.
func (h optHandler) Ack(o cp.Options) bool {
	return string(h.request(h.s).Append(nil)) == string(o.Append(nil))
}
func (h optHandler) Nak(o cp.Options) bool    { h.nak(h.s, o); return true }
func (h optHandler) Reject(o cp.Options) bool { h.reject(h.s, o); return true }

// ---- LCP handler (common to both roles) ----

type lcpHandler struct{ optHandler }

// Extended maps LCP's own codes (RFC 1661 §5.7-5.9, RFC 1570 §2) onto
// automaton events; unknown codes get a Code-Reject through RUC.
func (h *lcpHandler) Extended(p cp.Packet) (cp.Event, bool) {
	s := h.s
	switch p.Code {
	case cp.ProtoRej:
		if len(p.Data) < 2 {
			return 0, false
		}
		proto := binary.BigEndian.Uint16(p.Data)
		s.log.Debug("peer rejected protocol", "proto", lcp.ProtocolName(proto))
		if pr, ok := s.role.(interface{ protocolRejected(uint16) }); ok {
			pr.protocolRejected(proto)
		}
		if proto == lcp.Protocol {
			return cp.RXJMinus, true
		}
		if proto == ipcp.Protocol && s.lcp.State() == cp.Opened {
			defer s.ipcp.ProtocolRejected()
		}
		return cp.RXJPlus, true
	case cp.EchoReq, cp.EchoReply, cp.DiscardReq, cp.Identification, cp.TimeRemaining:
		// RFC 1570: Identification and Time-Remaining are informational.
		return cp.RXR, true
	}
	return 0, false
}

// EchoReply is the ser action: RFC 1661 §5.8 answers an Echo-Request with
// our magic number and the request's data; Echo-Replies reset the echo
// failure count; Discard, Identification and Time-Remaining are only logged.
func (h *lcpHandler) EchoReply(p cp.Packet) {
	s := h.s
	switch p.Code {
	case cp.EchoReq:
		if len(p.Data) >= 4 && binary.BigEndian.Uint32(p.Data) == s.magic && s.magic != 0 {
			s.log.Debug("echo with our own magic: looped back?")
		}
		d := binary.BigEndian.AppendUint32(nil, s.magic)
		if len(p.Data) > 4 {
			d = append(d, p.Data[4:]...)
		}
		s.sendCP(lcp.Protocol, cp.Packet{Code: cp.EchoReply, ID: p.ID, Data: d})
	case cp.EchoReply:
		s.echoOut = 0
	case cp.Identification:
		if len(p.Data) > 4 {
			s.log.Debug("peer identification", "text", string(p.Data[4:]))
		}
	}
}

// Up is LCP's tlu: apply the negotiated framing, start echoes, and enter
// the authentication or the network phase (RFC 1661 §3.4, §3.5).
func (h *lcpHandler) Up() {
	s := h.s
	s.log.Debug("LCP opened", "peerMRU", s.peerMRU, "accm", s.peerACCM, "acfc", s.txACFC, "pfc", s.txPFC)
	s.enc.SetACCM(s.peerACCM)
	// Our request as the peer acked it says which ACCM the peer now uses
	// toward us.
	for _, o := range s.role.lcpRequest(s) {
		if o.Type == lcp.OptACCM {
			s.dec.SetACCM(s.cfg.AsyncMap)
		}
	}
	s.startEcho()
	if s.role.authStart(s) {
		s.setPhase(PhaseAuthenticate, string(s.authProto))
		return
	}
	s.beginNetwork()
}

// Down is LCP's tld: back to the default framing, NCPs down.
func (h *lcpHandler) Down() {
	s := h.s
	s.enc.SetACCM(hdlc.DefaultACCM)
	s.dec.SetACCM(hdlc.DefaultACCM)
	s.txACFC, s.txPFC = false, false
	s.stopTimer(tEcho)
	s.stopTimer(tAuth)
	s.role.lcpDown(s)
	if s.ipcp.State() != cp.Initial && s.ipcp.State() != cp.Starting {
		s.ipcp.Down()
	}
	if s.phase != PhaseTerminate {
		s.setPhase(PhaseEstablish, "LCP down")
	}
	// The peer's Terminate-Request is the usual way a session ends.
	if s.lcp.State() == cp.Stopping {
		s.setCause(CausePeer)
	}
}

func (h *lcpHandler) Started() {}

func (h *lcpHandler) Finished() {
	s := h.s
	s.setCause(CauseLCP)
	s.setPhase(PhaseDead, "")
	s.ended = true
}

// beginNetwork enters the network phase and opens IPCP.
func (s *session) beginNetwork() {
	s.setPhase(PhaseNetwork, "")
	if err := s.role.networkStart(s); err != nil {
		s.log.Warn("network attach failed", "err", err)
		s.closeSoon(CauseNoAddress, "No address available")
		return
	}
	s.ipcp.Open()
	s.ipcp.Up()
}

// ---- IPCP handler (common) ----

type ipcpHandler struct{ optHandler }

func (h *ipcpHandler) Extended(cp.Packet) (cp.Event, bool) {
	return 0, false
}
func (h *ipcpHandler) EchoReply(cp.Packet) {}

// Up is IPCP's tlu: the session is running; idle and maxconnect start.
func (h *ipcpHandler) Up() {
	s := h.s
	s.setPhase(PhaseRunning, "IPCP opened")
	s.upAt = s.clock.Now()
	s.lastIP = s.upAt
	if s.cfg.MaxConnect > 0 {
		s.setTimer(tMaxConnect, s.cfg.MaxConnect)
	}
	if s.cfg.Idle > 0 {
		s.setTimer(tIdle, s.cfg.Idle)
	}
	s.role.ipcpUp(s)
}
func (h *ipcpHandler) Down() {
	s := h.s
	s.vjTx, s.vjRx = nil, nil
	s.stopTimer(tIdle)
	s.stopTimer(tMaxConnect)
	if s.phase == PhaseRunning {
		s.setPhase(PhaseNetwork, "IPCP down")
	}
}
func (h *ipcpHandler) Started() {}
func (h *ipcpHandler) Finished() {
	// pppd: when the last NCP goes down, LCP is closed.
	if h.s.lcp.State() == cp.Opened {
		h.s.closeSoon(CauseNoNetwork, "No network protocols running")
	}
}

// ErrClosed is returned by Client methods once the link is down.
var ErrClosed = errors.New("ppp: session closed")
