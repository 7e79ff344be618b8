package pbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/pbx/dialplan"
	"github.com/isp-box/isp-box/softmodem"
	"github.com/isp-box/isp-box/softmodem/g711"
)

// ModemCall is the data stream of a call the box answered with its own
// software modem (the dial plan's Modem(answer)): what a hardware modem
// line hands on after CONNECT. Read returns an error once the carrier is
// lost or the call is over; Close hangs up.
type ModemCall interface {
	io.ReadWriteCloser
	CallID() string
	From() string // the calling peer
	Exten() string
	Modulation() string // "V.22bis"
	Rate() int          // bit/s
}

// ModemHandler serves one connected softmodem call (PPP, a login); the
// call is hung up when it returns.
type ModemHandler func(ctx context.Context, mc ModemCall) error

// Timing of a softmodem call.
const (
	// modemJitter is the fixed playout delay: Cisco's fixed buffer for
	// modem passthrough is 100 ms; it is also little enough for an
	// interactive login.
	modemJitter = 100 * time.Millisecond
	// modemConnectTimeout bounds the V.25 answer sequence and training.
	modemConnectTimeout = 45 * time.Second
	modemStatsEvery     = 5 * time.Second
)

var modemModulations = map[string]softmodem.Modulation{
	"v21": softmodem.V21, "bell103": softmodem.Bell103, "v22": softmodem.V22, "v22bis": softmodem.V22bis,
}

// modemOffer is what the caller's SDP offers for a modem call.
type modemOffer struct {
	remote netip.AddrPort
	pt     uint8
	law    g711.Law
	ptime  int // ms
}

// parseModemOffer picks PCMU, else PCMA, from an offer (V.152 voice-band
// data: G.711 only, no transcoding) and the packet time (10, 20 or 30 ms).
func parseModemOffer(body []byte) (modemOffer, error) {
	addr, pts, names := sdpAudio(body)
	if !addr.IsValid() {
		return modemOffer{}, errors.New("no audio stream in the offer")
	}
	o := modemOffer{remote: addr, ptime: 20}
	found := false
	for _, want := range []string{"ulaw", "alaw"} {
		for _, pt := range pts {
			if names[pt] != want {
				continue
			}
			n, err := strconv.Atoi(pt)
			if err != nil || n < 0 || n > 127 {
				continue
			}
			o.pt, found = uint8(n), true
			if want == "alaw" {
				o.law = g711.Alaw
			}
			break
		}
		if found {
			break
		}
	}
	if !found {
		return modemOffer{}, errors.New("the offer has neither PCMU nor PCMA")
	}
	for _, l := range sdpLines(body) {
		if v, ok := strings.CutPrefix(l, "a=ptime:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && (n == 10 || n == 20 || n == 30) {
				o.ptime = n
			}
		}
	}
	return o, nil
}

// modemAnswerSDP answers with the one G.711 codec and marks the stream
// as voice-band data (ITU-T V.152 §7: a=gpmd:<pt> vbd=yes), so a gateway
// that knows V.152 turns off VAD, comfort noise and echo cancellation.
func modemAnswerSDP(id string, version int, local netip.AddrPort, o modemOffer, dir string) []byte {
	// RFC 4566 §5.2: the session id is numeric; ours is the call id's.
	sessID := id
	if n, err := strconv.ParseUint(id, 16, 64); err == nil {
		sessID = strconv.FormatUint(n, 10)
	}
	ipv := "IP4"
	if local.Addr().Is6() {
		ipv = "IP6"
	}
	enc := "PCMU"
	if o.law == g711.Alaw {
		enc = "PCMA"
	}
	return joinSDP([]string{
		"v=0",
		fmt.Sprintf("o=isp-box %s %d IN %s %s", sessID, version, ipv, local.Addr()),
		"s=isp-box softmodem",
		fmt.Sprintf("c=IN %s %s", ipv, local.Addr()),
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP %d", local.Port(), o.pt),
		fmt.Sprintf("a=rtpmap:%d %s/8000", o.pt, enc),
		fmt.Sprintf("a=ptime:%d", o.ptime),
		fmt.Sprintf("a=gpmd:%d vbd=yes", o.pt),
		"a=" + dir,
	})
}

// answerModem runs the dial plan's Modem(answer): the box answers the
// call itself, terminates the RTP, and runs its software modem on it; once
// the modems connect, the data stream goes to the modem handler. It
// returns when the call is over.
func (c *call) answerModem(st dialplan.Step) {
	s := c.s
	handler := s.modemHandler
	if handler == nil {
		s.log.Warn("Modem() without a modem handler", "id", c.id)
		c.fail(503, "Service Unavailable", "CHANUNAVAIL")
		return
	}
	c.mu.Lock()
	a := c.legs[sideCaller]
	offer := a.sdp
	c.mu.Unlock()
	o, err := parseModemOffer(offer)
	if err != nil {
		s.log.Info("Modem() cannot answer", "id", c.id, "err", err)
		c.fail(488, "Not Acceptable Here", "CHANUNAVAIL")
		return
	}
	s.mu.Lock()
	lo, hi := s.cfg.General.RTPStart, s.cfg.General.RTPEnd
	s.mu.Unlock()
	conn, rtcp, err := listenRTP(s.addr.Addr(), lo, hi)
	if err != nil {
		s.log.Warn("Modem(): no RTP port", "id", c.id, "err", err)
		c.fail(503, "Service Unavailable", "CONGESTION")
		return
	}
	defer rtcp.Close()
	defer conn.Close()
	local := netip.AddrPortFrom(s.localIP(o.remote.Addr()), uint16(conn.LocalAddr().(*net.UDPAddr).Port))
	mod := modemModulations[st.Modem.Modulation]
	m := softmodem.New(softmodem.Config{Modulation: mod, Role: softmodem.Answer})
	defer m.Close()

	c.mu.Lock()
	c.media, c.callee = "modem", "Modem/"+mod.String()
	c.codec = map[g711.Law]string{g711.Ulaw: "ulaw", g711.Alaw: "alaw"}[o.law]
	c.mu.Unlock()
	if !c.changeState(stateUp, transition{}) {
		return
	}
	mctx, stop := context.WithCancel(c.ctx)
	defer stop()
	med := &modemMedia{conn: conn, remote: o.remote, offer: o, m: m, jb: newJitterBuffer(int(modemJitter / time.Millisecond * 8)),
		local: local, dir: modemDirection(offer), version: 1}
	med.body = modemAnswerSDP(c.id, med.version, local, o, med.dir)
	c.mu.Lock()
	c.modem = med
	a.ourSDP = med.body
	c.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); med.receive(mctx) }()
	go func() { defer wg.Done(); med.send(mctx) }()
	defer wg.Wait()
	defer stop()

	if ack := c.sendFinal2xx(c.inviteTx, c.inviteReq, med.sdp(), nil, a); ack == nil {
		c.hangup(-1, "ANSWER", 200, "box")
		return
	}
	s.log.Info("softmodem answering", "id", c.id, "modulation", mod, "codec", c.codec, "ptime", o.ptime, "remote", o.remote)

	publish := func(final bool) { s.publish(med.snapshot(c.id, final)) }
	defer publish(true)
	tick := time.NewTicker(modemStatsEvery)
	defer tick.Stop()
	deadline := time.NewTimer(modemConnectTimeout)
	defer deadline.Stop()
	// Wait for CONNECT.
	for m.State() != softmodem.StateData {
		select {
		case <-m.Changed():
		case <-tick.C:
			publish(false)
		case <-deadline.C:
			s.log.Info("softmodem did not connect", "id", c.id, "state", m.State())
			c.hangup(-1, "ANSWER", 200, "box")
			return
		case <-c.ctx.Done():
			c.hangupIfUp()
			return
		}
		if m.State() == softmodem.StateCarrierLost {
			c.hangup(-1, "ANSWER", 200, "box")
			return
		}
	}
	ms := m.Stats()
	c.mu.Lock()
	c.callee = fmt.Sprintf("Modem/%s/%d", mod, ms.Rate)
	c.mu.Unlock()
	s.log.Info("softmodem connected", "id", c.id, "modulation", mod, "rate", ms.Rate)
	publish(false)
	mc := &modemCall{m: m, c: c, mod: mod, rate: ms.Rate, hang: stop}
	done := make(chan error, 1)
	go func() { done <- handler(mctx, mc) }()
	for {
		select {
		case err := <-done:
			s.log.Debug("softmodem handler ended", "id", c.id, "err", err)
			c.hangupIfUp()
			return
		case <-tick.C:
			publish(false)
		case <-c.ctx.Done():
			stop()
			m.Close()
			<-done
			c.hangupIfUp()
			return
		}
	}
}

// hangupIfUp BYEs the caller unless the call already ended (the caller's
// BYE).
func (c *call) hangupIfUp() {
	c.hangup(-1, "ANSWER", 200, "box")
}

// modemCall is the ModemCall the handler gets.
type modemCall struct {
	m    *softmodem.Modem
	c    *call
	mod  softmodem.Modulation
	rate int
	hang func()
}

func (mc *modemCall) Read(p []byte) (int, error) {
	n, err := mc.m.Read(p)
	if errors.Is(err, softmodem.ErrCarrierLost) || errors.Is(err, softmodem.ErrClosed) {
		return n, fmt.Errorf("pbx: softmodem call %s: %w", mc.c.id, err)
	}
	return n, err
}
func (mc *modemCall) Write(p []byte) (int, error) { return mc.m.Write(p) }
func (mc *modemCall) Close() error {
	mc.hang()
	return mc.m.Close()
}
func (mc *modemCall) CallID() string     { return mc.c.id }
func (mc *modemCall) From() string       { return mc.c.from }
func (mc *modemCall) Exten() string      { return mc.c.exten }
func (mc *modemCall) Modulation() string { return mc.mod.String() }
func (mc *modemCall) Rate() int          { return mc.rate }

// modemMedia terminates the call's RTP: packets in go through the fixed
// jitter buffer to the modem; the modem's output leaves paced by our own
// clock, one packet every ptime.
type modemMedia struct {
	conn   *net.UDPConn
	offer  modemOffer
	m      *softmodem.Modem
	jb     *jitterBuffer
	mu     sync.Mutex // guards remote, offer, dir, version, body, rx, jb
	remote netip.AddrPort
	local  netip.AddrPort
	dir    string // our direction (RFC 3264 §6.1): sendrecv unless the caller holds
	// version is our description's o= version, body the description
	// (RFC 3264 §8: the version moves only when the description does).
	version int
	body    []byte
	// reinvite serialises the caller's re-INVITEs (modemInDialog).
	reinvite sync.Mutex
	rx       streamStats
	other    uint64 // packets of other payload types (RFC 2833 events, comfort noise): ignored
}

// snapshot is the call's modem and RTP figures.
func (md *modemMedia) snapshot(id string, final bool) bus.ModemStats {
	ms, rs := md.m.Stats(), md.stats()
	return bus.ModemStats{
		CallID: id, Modulation: ms.Modulation.String(), Rate: ms.Rate, State: ms.State.String(), SNR: ms.SNR, EQMSE: ms.EQMSE,
		Retrains: ms.Retrains, RxLevel: ms.RxLevel, RTPLost: rs.Lost, RTPJitter: rs.JitterMS, RTPLate: md.late(),
		BytesIn: ms.RxBytes, BytesOut: ms.TxBytes, Final: final,
	}
}

func (md *modemMedia) stats() StreamStats {
	md.mu.Lock()
	defer md.mu.Unlock()
	return md.rx.StreamStats
}

func (md *modemMedia) late() uint64 {
	md.mu.Lock()
	defer md.mu.Unlock()
	return md.jb.late
}

func (md *modemMedia) receive(ctx context.Context) {
	buf := make([]byte, 1500)
	pcm := make([]int16, 0, 480)
	var p rtp.Packet
	go func() { <-ctx.Done(); md.conn.SetReadDeadline(time.Now()) }()
	for {
		n, from, err := md.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if err := p.Unmarshal(buf[:n]); err != nil {
			continue
		}
		md.mu.Lock()
		// Symmetric RTP: answer where the caller's packets come from
		// (a NAT in front of it rewrites the SDP's address).
		md.remote = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if p.PayloadType != md.offer.pt {
			md.other++
			md.mu.Unlock()
			continue
		}
		md.rx.update(&p.Header, n, time.Now())
		pcm = pcm[:len(p.Payload)]
		md.offer.law.Decode(pcm, p.Payload)
		md.jb.put(p.Timestamp, pcm)
		md.mu.Unlock()
	}
}

func (md *modemMedia) send(ctx context.Context) {
	per := time.Duration(md.offer.ptime) * time.Millisecond
	n := md.offer.ptime * 8
	rx, tx := make([]int16, n), make([]int16, n)
	h := rtp.Header{Version: 2, PayloadType: md.offer.pt, SequenceNumber: uint16(rand.Uint32()),
		Timestamp: rand.Uint32(), SSRC: rand.Uint32()}
	pkt := make([]byte, 12+n)
	next := time.Now()
	for {
		md.mu.Lock()
		md.jb.take(rx)
		to, law, send := md.remote, md.offer.law, md.sending()
		h.PayloadType = md.offer.pt
		md.mu.Unlock()
		md.m.Process(rx, tx)
		hl, err := h.MarshalTo(pkt)
		if err == nil && send {
			law.Encode(pkt[hl:], tx)
			md.conn.WriteToUDPAddrPort(pkt[:hl+n], to)
		}
		h.SequenceNumber++
		h.Timestamp += uint32(n)
		// Paced by the deadline, not a ticker: a late wake-up sends the
		// next packet sooner instead of dropping one (the far modem
		// needs exactly 8000 samples a second).
		next = next.Add(per)
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		} else if d < -time.Second {
			next = time.Now() // the machine stalled; do not burst a second of audio
		}
		if ctx.Err() != nil {
			return
		}
	}
}
