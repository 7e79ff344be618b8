package ppp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isp-box/isp-box/internal/clock"
	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/hdlc"
	"github.com/isp-box/isp-box/ppp/ipcp"
	"github.com/isp-box/isp-box/ppp/lcp"
	"github.com/isp-box/isp-box/ppp/vj"
)

// timer keys of the owner's timer set.
const (
	tLCP = iota
	tIPCP
	tAuth      // auth retransmit / wait
	tAuthDelay // delayed failure answer
	tEcho
	tIdle
	tMaxConnect
	tHard // last resort end of a termination
	numTimers
)

// ioStats are the session's counters, readable from other goroutines.
type ioStats struct {
	BytesIn, BytesOut, PktsIn, PktsOut atomic.Uint64
	Dropped                            atomic.Uint64 // IP packets dropped (queue full, not up)
	ProtoRejects                       atomic.Uint64
}

// role is what differs between server and client; what they do alike is
// the session's (this file) and negotiate.go's.
type role interface {
	lcpRequest(s *session) cp.Options
	lcpCheck(s *session, opts cp.Options, rejectOnly bool) (cp.Code, cp.Options)
	lcpNak(s *session, opts cp.Options)
	lcpReject(s *session, opts cp.Options)
	ipcpRequest(s *session) cp.Options
	ipcpCheck(s *session, opts cp.Options, rejectOnly bool) (cp.Code, cp.Options)
	ipcpNak(s *session, opts cp.Options)
	ipcpReject(s *session, opts cp.Options)
	// authStart runs when LCP opens: it returns false if no authentication
	// phase is needed in either direction.
	authStart(s *session) bool
	authInput(s *session, proto uint16, p cp.Packet)
	authTimeout(s *session)
	authDelayed(s *session)
	// networkStart runs when authentication is done.
	networkStart(s *session) error
	ipcpUp(s *session)
	// lcpDown runs on This-Layer-Down: a renegotiated link authenticates
	// again (RFC 1661 §3.5).
	lcpDown(s *session)
	// receiveIP takes an IP packet from the line (decompressed).
	receiveIP(s *session, pkt []byte)
}

// session is one PPP link, either role. All fields are owned by the owner
// goroutine unless noted.
type session struct {
	id    string
	log   *slog.Logger
	clock Clock
	rw    io.ReadWriteCloser
	role  role
	cfg   Config // limits, timers, MRU, ACCM, echo (the client fills one too)

	enc *hdlc.Encoder
	dec *hdlc.Reader // read by the reader goroutine; its setters are atomic

	rx     chan []byte // frames from the reader
	rxErr  chan error  // reader's final error
	txq    txQueue
	wErr   chan error // writer's final error
	stop   chan struct{}
	wg     sync.WaitGroup
	events chan func() // work posted by other goroutines (deliver, client calls)

	timer    Timer
	deadline [numTimers]time.Time

	phase Phase
	lcp   *cp.FSM
	ipcp  *cp.FSM

	// LCP state.
	magic       uint32 // ours
	loops       int    // magic collisions seen
	mru         int    // ours, as acked
	peerMRU     int
	peerACCM    uint32
	txACFC      bool // peer accepts compressed fields
	txPFC       bool
	authProto   AuthProto // the auth protocol the link agreed on ("" = none)
	echoOut     int       // unanswered Echo-Requests
	rxSinceEcho bool

	// IPCP / IP state.
	vjTx        *vj.Compressor
	vjRx        *vj.Decompressor
	lastFCSErr  uint64
	lastIP      time.Time
	upAt        time.Time
	start       time.Time
	user        string
	pendingEnd  string // cause to close LCP with after the current input
	pendingText string
	cause       string // first cause wins
	ended       bool

	stats   ioStats
	info    *liveInfo           // shared with Sessions.List
	onPhase func(Phase, string) // publishes bus.PPPPhase (server)
}

func newSession(id string, rw io.ReadWriteCloser, cfg Config, r role, clk Clock, log *slog.Logger) *session {
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &session{
		id: id, rw: rw, cfg: cfg, role: r, clock: clk, log: log,
		enc:     hdlc.NewEncoder(),
		dec:     hdlc.NewReader(rw),
		rx:      make(chan []byte, 64),
		rxErr:   make(chan error, 1),
		wErr:    make(chan error, 1),
		stop:    make(chan struct{}),
		events:  make(chan func(), 256),
		peerMRU: lcp.DefaultMRU,
		mru:     lcp.DefaultMRU,
	}
	s.txq.signal = make(chan struct{}, 1)
	if cfg.MRU > 0 {
		s.mru = cfg.MRU
	}
	s.dec.SetMaxFrame(max(s.mru, lcp.DefaultMRU) + 8)
	s.magic = newMagic()
	p := cp.Params{Restart: cfg.Restart, MaxConfigure: cfg.MaxConfigure, MaxTerminate: cfg.MaxTerminate, MaxFailure: cfg.MaxFailure}
	if p.Restart <= 0 {
		p = cp.DefaultParams()
	}
	s.lcp = cp.New("LCP", &lcpHandler{optHandler{s, r.lcpRequest, r.lcpCheck, r.lcpNak, r.lcpReject}}, func(pk cp.Packet) { s.sendCP(lcp.Protocol, pk) }, fsmTimer{s, tLCP}, p, log)
	ip := p
	if cfg.IPCPMaxFailure > 0 {
		ip.MaxFailure = cfg.IPCPMaxFailure
	}
	s.ipcp = cp.New("IPCP", &ipcpHandler{optHandler{s, r.ipcpRequest, r.ipcpCheck, r.ipcpNak, r.ipcpReject}}, func(pk cp.Packet) { s.sendCP(ipcp.Protocol, pk) }, fsmTimer{s, tIPCP}, ip, log)
	return s
}

func newMagic() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if m := binary.BigEndian.Uint32(b[:]); m != 0 {
			return m
		}
	}
}

// fsmTimer is a cp.Timer over the session's timer set.
type fsmTimer struct {
	s   *session
	key int
}

func (t fsmTimer) Start(d time.Duration) { t.s.setTimer(t.key, d) }
func (t fsmTimer) Stop()                 { t.s.stopTimer(t.key) }

func (s *session) setTimer(k int, d time.Duration) { s.deadline[k] = s.clock.Now().Add(d) }
func (s *session) stopTimer(k int)                 { s.deadline[k] = time.Time{} }

// run starts the reader and writer and runs the owner loop until the link
// is dead. ready, if not nil, is called from the owner when IPCP opens.
func (s *session) run(ctx context.Context) {
	s.start = s.clock.Now()
	s.lastIP = s.start
	s.timer = s.clock.NewTimer(time.Hour)
	s.wg.Add(2)
	go s.reader()
	go s.writer()

	s.setPhase(PhaseEstablish, "")
	s.lcp.Open()
	s.lcp.Up()
	done := ctx.Done()
	for !s.ended {
		s.armTimer()
		select {
		case f := <-s.rx:
			s.input(f)
		case err := <-s.rxErr:
			s.log.Debug("line closed", "err", err)
			s.lineLost()
		case err := <-s.wErr:
			s.log.Debug("line write failed", "err", err)
			s.lineLost()
		case fn := <-s.events:
			fn()
		case <-s.timer.C():
			s.fireTimers()
		case <-done:
			done = nil
			s.terminate(CauseShutdown, "Shutting down")
		}
		s.afterInput()
	}
	s.shutdown()
}

func (s *session) lineLost() {
	s.setCause(CauseCarrier)
	if s.ipcp.State() == cp.Opened {
		s.ipcp.Down()
	}
	s.lcp.Down()
	s.ended = true
}

// shutdown flushes the writer, closes the line and waits for the reader
// and writer goroutines.
func (s *session) shutdown() {
	s.txq.close()
	// Give the writer time to put the last Terminate-Ack on the line; a
	// port stuck in flow control must not hold the session forever.
	flushed := make(chan struct{})
	go func() { s.wg.Wait(); close(flushed) }()
	t := s.clock.NewTimer(2 * time.Second)
	select {
	case <-s.wErr:
	case <-t.C():
	case <-flushed:
	}
	t.Stop()
	close(s.stop)
	s.rw.Close()
	// A line whose Close does not interrupt a blocked Read would hold the
	// reader forever; the session must still end.
	t = s.clock.NewTimer(5 * time.Second)
	select {
	case <-flushed:
	case <-t.C():
		s.log.Warn("line reader did not stop after Close")
	}
	t.Stop()
	s.timer.Stop()
}

// reader deframes the line into s.rx. It copies each frame because the
// deframer reuses its buffer; the owner may keep the copy (IP packets go to
// the network and the client by reference). It stops on a line error or
// when the session is stopped.
func (s *session) reader() {
	defer s.wg.Done()
	for {
		f, err := s.dec.ReadFrame()
		if err != nil {
			s.rxErr <- err
			return
		}
		c := make([]byte, len(f))
		copy(c, f)
		select {
		case s.rx <- c:
		case <-s.stop:
			s.rxErr <- io.EOF
			return
		}
	}
}

// writer puts queued frames on the line, so that the owner never blocks on
// a slow or flow-controlled port; a write error means the line is gone.
func (s *session) writer() {
	defer s.wg.Done()
	for {
		frames, done := s.txq.pop()
		for _, f := range frames {
			if _, err := s.rw.Write(f); err != nil {
				s.wErr <- err
				return
			}
		}
		if done {
			s.wErr <- nil
			return
		}
		if len(frames) == 0 {
			select {
			case <-s.txq.signal:
			case <-s.stop:
				s.wErr <- nil
				return
			}
		}
	}
}

// armTimer points the one clock timer at the earliest deadline of the
// timer set: all protocol timers share it, so the owner selects on one
// channel whatever runs (LCP, IPCP, auth, echo, idle, maxconnect).
func (s *session) armTimer() {
	var next time.Time
	for _, d := range s.deadline {
		if !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if !s.timer.Stop() {
		select {
		case <-s.timer.C():
		default:
		}
	}
	if next.IsZero() {
		return
	}
	s.timer.Reset(max(next.Sub(s.clock.Now()), 0))
}

func (s *session) fireTimers() {
	now := s.clock.Now()
	for k := range numTimers {
		d := s.deadline[k]
		if d.IsZero() || d.After(now) {
			continue
		}
		s.deadline[k] = time.Time{}
		switch k {
		case tLCP:
			s.lcp.Timeout()
		case tIPCP:
			s.ipcp.Timeout()
		case tAuth:
			s.role.authTimeout(s)
		case tAuthDelay:
			s.role.authDelayed(s)
		case tEcho:
			s.echoTick()
		case tIdle:
			s.idleTick()
		case tMaxConnect:
			s.terminate(CauseMaxConnect, "Connect time expired")
		case tHard:
			s.log.Debug("termination timed out")
			s.ended = true
		}
		s.afterInput()
	}
}

// afterInput carries out a close requested from inside an automaton
// callback, where re-entering the automaton is not allowed.
func (s *session) afterInput() {
	if s.pendingEnd != "" {
		cause, text := s.pendingEnd, s.pendingText
		s.pendingEnd, s.pendingText = "", ""
		s.terminate(cause, text)
	}
}

// closeSoon asks for termination once the current callback returns.
func (s *session) closeSoon(cause, text string) {
	if s.pendingEnd == "" {
		s.pendingEnd, s.pendingText = cause, text
	}
}

func (s *session) setCause(c string) {
	if s.cause == "" {
		s.cause = c
	}
}

// terminate closes LCP with a Terminate-Request (the automaton retries
// Max-Terminate times); the session ends when LCP reaches Closed.
func (s *session) terminate(cause, text string) {
	s.setCause(cause)
	s.log.Info("terminating", "cause", cause)
	if s.ipcp.State() == cp.Opened {
		s.ipcp.Down()
	}
	switch s.lcp.State() {
	case cp.Initial, cp.Starting, cp.Closed, cp.Stopped:
		s.ended = true
		return
	default: // the other values: after the switch
	}
	s.setPhase(PhaseTerminate, text)
	s.lcp.Close(text)
	if s.deadline[tHard].IsZero() {
		s.setTimer(tHard, s.restart()*time.Duration(max(s.cfg.MaxTerminate, 2)+1))
	}
}

// restart is the Restart timer (RFC 1661 §4.6), also the authentication
// retransmit period.
func (s *session) restart() time.Duration {
	if s.cfg.Restart > 0 {
		return s.cfg.Restart
	}
	return 3 * time.Second
}

func (s *session) setPhase(p Phase, detail string) {
	if s.phase == p && detail == "" {
		return
	}
	s.phase = p
	s.log.Debug("phase", "phase", p.String(), "detail", detail)
	s.info.setPhase(p, detail)
	if s.onPhase != nil {
		s.onPhase(p, detail)
	}
}

// input handles one deframed frame.
func (s *session) input(f []byte) {
	s.rxSinceEcho = true
	if n := s.dec.Stats.FCSErrors.Load(); n != s.lastFCSErr {
		// RFC 1144 §4.2: after a lost frame the decompressor must resync.
		s.lastFCSErr = n
		if s.vjRx != nil {
			s.vjRx.Toss()
		}
	}
	proto, info, err := hdlc.ParseHeader(f)
	if err != nil {
		s.log.Debug("bad frame header", "err", err)
		return
	}
	if len(info) > s.mru+64 {
		s.log.Debug("frame over MRU dropped", "len", len(info))
		s.stats.Dropped.Add(1)
		return
	}
	// LCP is accepted in every phase; it is what brings the link up.
	if proto == lcp.Protocol {
		var p cp.Packet
		if err := p.Unmarshal(info); err != nil {
			s.log.Debug("bad LCP packet", "err", err)
			return
		}
		s.lcp.Input(p)
		return
	}
	// RFC 1661 §3.4: non-LCP packets before LCP is Opened are discarded.
	if s.lcp.State() != cp.Opened {
		s.log.Debug("discarding non-LCP frame while LCP not open", "proto", lcp.ProtocolName(proto))
		return
	}
	switch proto {
	case lcp.ProtoPAP, lcp.ProtoCHAP:
		var p cp.Packet
		if err := p.Unmarshal(info); err != nil {
			return
		}
		s.role.authInput(s, proto, p)
		return
	}
	// pppd: only authentication and LCP before the network phase.
	if s.phase < PhaseNetwork {
		s.log.Debug("discarding frame before network phase", "proto", lcp.ProtocolName(proto))
		return
	}
	switch proto {
	case ipcp.Protocol:
		var p cp.Packet
		if err := p.Unmarshal(info); err != nil {
			return
		}
		s.ipcp.Input(p)
		return
	case ipcp.ProtoIP, ipcp.ProtoVJC, ipcp.ProtoVJUC:
		if s.ipcp.State() != cp.Opened {
			s.stats.Dropped.Add(1)
			return
		}
		s.ipInput(proto, info)
		return
	}
	// Anything else (IPXCP, NBFCP, CCP, IPv6CP, unknown) is refused with
	// LCP Protocol-Reject; the peer stops that protocol and the link goes on.
	s.protocolReject(proto, info)
}

// protocolReject sends LCP Protocol-Reject (RFC 1661 §5.7) for a protocol we
// do not run: IPXCP, NBFCP, CCP, IPv6CP, anything else.
func (s *session) protocolReject(proto uint16, info []byte) {
	s.stats.ProtoRejects.Add(1)
	s.log.Debug("Protocol-Reject", "proto", lcp.ProtocolName(proto))
	n := min(len(info), s.peerMRU-6)
	d := binary.BigEndian.AppendUint16(nil, proto)
	d = append(d, info[:max(n, 0)]...)
	s.sendCP(lcp.Protocol, cp.Packet{Code: cp.ProtoRej, ID: s.lcp.NextID(), Data: d})
}

func (s *session) ipInput(proto uint16, info []byte) {
	pkt := info
	if proto != ipcp.ProtoIP {
		if s.vjRx == nil {
			s.stats.Dropped.Add(1)
			return
		}
		var err error
		if pkt, err = s.vjRx.Decompress(nil, proto, info); err != nil {
			s.log.Debug("VJ decompress", "err", err)
			s.stats.Dropped.Add(1)
			return
		}
	}
	s.stats.PktsIn.Add(1)
	s.stats.BytesIn.Add(uint64(len(pkt)))
	s.lastIP = s.clock.Now()
	s.role.receiveIP(s, pkt)
}

// startVJ turns VJ compression on in each direction IPCP negotiated
// (RFC 1332 §4): we compress with the peer's slots (its option says what
// it can receive) and, if our own request stood, decompress with ours.
func (s *session) startVJ(peer *ipcp.Compression, rx bool, slots uint8) {
	if peer != nil {
		s.vjTx = vj.NewCompressor(peer.MaxSlot, peer.CompSlot != 0)
	}
	if rx {
		s.vjRx = vj.NewDecompressor(slots)
	}
}

// sendIP sends one IP packet to the peer, compressed if VJ is on.
func (s *session) sendIP(pkt []byte) {
	if s.ipcp.State() != cp.Opened {
		s.stats.Dropped.Add(1)
		return
	}
	if len(pkt) > s.peerMRU {
		// RFC 1661 §6.1: the peer need not accept more than its MRU.
		s.stats.Dropped.Add(1)
		return
	}
	proto, out := ipcp.ProtoIP, pkt
	if s.vjTx != nil {
		proto, out = s.vjTx.Compress(make([]byte, 0, len(pkt)), pkt)
	}
	if !s.sendFrame(proto, out, true) {
		s.stats.Dropped.Add(1)
		return
	}
	s.stats.PktsOut.Add(1)
	s.stats.BytesOut.Add(uint64(len(pkt)))
	s.lastIP = s.clock.Now()
}

// sendCP sends a control packet of protocol proto.
func (s *session) sendCP(proto uint16, p cp.Packet) {
	b, err := p.Marshal()
	if err != nil {
		s.log.Warn("control packet too long", "proto", lcp.ProtocolName(proto), "err", err)
		return
	}
	s.sendFrame(proto, b, false)
}

// sendFrame frames and queues info. RFC 1661 §6.5, §6.6 and RFC 1662 §7.1:
// LCP packets never use ACFC/PFC, and its Configure/Terminate/Code-Reject
// packets go out with the default ACCM.
func (s *session) sendFrame(proto uint16, info []byte, data bool) bool {
	isLCP := proto == lcp.Protocol
	hdr := hdlc.AppendHeader(make([]byte, 0, 4), proto, s.txACFC && !isLCP, s.txPFC && !isLCP)
	defMap := isLCP && len(info) > 0 && info[0] >= byte(cp.ConfReq) && info[0] <= byte(cp.CodeRej)
	return s.txq.push(s.enc.AppendFrame(nil, hdr, info, defMap), data)
}
