package ata

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// The data path of an answered call. Each side sends the modem's bytes as
// RTP (RFC 3550) to the address and port in the SDP it received, with the
// negotiated payload type: CLEARMODE (RFC 4040) when both offered it, else
// PCMU carrying the same raw bytes (a real ATA would carry modem audio; the
// bytes stand for the demodulated data of a V.42 error-corrected link).
//
// Unlike a real ATA, which sends 50 packets a second even in silence, a
// line sends nothing while its modem has nothing to send: idle calls cost
// no CPU, which matters when hundreds of lines are up at once.

const (
	rtpHeaderLen = 12
	// pktInterval is the nominal packet time (a=ptime:20).
	pktInterval = sdpPtime * time.Millisecond
	// burstPackets is how far, in packet times, a sender may run ahead of
	// the line rate after being idle (the "small buffer" of a real DSP).
	burstPackets = 2
	// rxQueue is how many received packets wait for the modem to read them
	// (5 s at 50 packets/s); beyond that packets are dropped and counted.
	rxQueue = 256
)

// MediaStats counts what a line's RTP did over its whole life.
type MediaStats struct {
	PacketsSent     uint64 // RTP packets sent
	BytesSent       uint64 // payload bytes sent
	PacketsReceived uint64 // RTP packets accepted
	BytesReceived   uint64 // payload bytes accepted
	Lost            uint64 // sequence gaps: packets never seen
	Late            uint64 // duplicates and packets older than the newest seen (dropped)
	Foreign         uint64 // packets from another address than the SDP's, or another SSRC (dropped)
	BadPayload      uint64 // wrong payload type or not RTP (dropped)
	Overrun         uint64 // packets dropped because the modem did not read them in time
}

// mediaCounters is the atomic form of MediaStats, one per line.
type mediaCounters struct {
	pktSent, bytesSent, pktRecv, bytesRecv   atomic.Uint64
	lost, late, foreign, badPayload, overrun atomic.Uint64
}

func (c *mediaCounters) snapshot() MediaStats {
	return MediaStats{
		PacketsSent: c.pktSent.Load(), BytesSent: c.bytesSent.Load(),
		PacketsReceived: c.pktRecv.Load(), BytesReceived: c.bytesRecv.Load(),
		Lost: c.lost.Load(), Late: c.late.Load(), Foreign: c.foreign.Load(),
		BadPayload: c.badPayload.Load(), Overrun: c.overrun.Load(),
	}
}

// pacer is a token bucket in time units: due is the earliest time the next
// byte may leave. It allows a burst of `slack` after idleness and never more
// than the line rate on average.
type pacer struct {
	bitRate int
	slack   time.Duration
	due     time.Time
}

// wait reports how long to wait at now before sending.
func (p *pacer) wait(now time.Time) time.Duration {
	if d := p.due.Sub(now); d > 0 {
		return d
	}
	return 0
}

// sent books n bytes sent at now.
func (p *pacer) sent(now time.Time, n int) {
	if floor := now.Add(-p.slack); p.due.Before(floor) {
		p.due = floor
	}
	p.due = p.due.Add(time.Duration(n) * 8 * time.Second / time.Duration(p.bitRate))
}

// callRTP is what both kinds of call media (data relay and softmodem audio)
// hold: the line's RTP socket, which outlives the call, where RTP goes, and
// the loops that run until the call is over.
type callRTP struct {
	conn     *net.UDPConn
	remote   atomic.Pointer[netip.AddrPort] // where RTP goes; a re-INVITE may move it
	gone     chan struct{}                  // closed when the call is over (either side)
	goneOnce sync.Once
	wg       sync.WaitGroup // the call's loops
}

// init readies c for a new call on conn with RTP going to remote.
func (c *callRTP) init(conn *net.UDPConn, remote netip.AddrPort) {
	c.conn, c.gone = conn, make(chan struct{})
	c.setRemote(remote)
}

func (c *callRTP) setRemote(to netip.AddrPort) {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	c.remote.Store(&to)
}

func (c *callRTP) remoteAddr() netip.AddrPort { return *c.remote.Load() }

// run starts one of the call's loops; the loop calls c.wg.Done.
func (c *callRTP) run(loop func()) {
	c.wg.Add(1)
	go loop()
}

// stop ends the call's loops and waits for them. Safe to call more than
// once.
func (c *callRTP) stop() {
	c.goneOnce.Do(func() {
		close(c.gone)
		// Unblock the loops' reads; the socket stays open for the next call.
		_ = c.conn.SetReadDeadline(time.Now())
	})
	c.wg.Wait()
}

// media is the RTP session of one call. The line's RTP socket outlives it.
type media struct {
	callRTP
	pt      uint8
	speed   int
	maxData int // payload bytes per packet: speed × ptime
	stats   *mediaCounters
	log     *slog.Logger

	txMu  sync.Mutex // guards txBuf
	txBuf []byte     // bytes written by the modem, not yet sent
	txCap int
	kick  chan struct{} // data was added to txBuf (cap 1)
	space chan struct{} // room was made in txBuf (cap 1)
	wMu   sync.Mutex    // serialises Write calls

	rx      chan []byte
	rMu     sync.Mutex // serialises Read calls, guards pending
	pending []byte
}

func newMedia(conn *net.UDPConn, remote netip.AddrPort, pt uint8, speed int, stats *mediaCounters, log *slog.Logger) *media {
	maxData := speed * sdpPtime / 8000 // bits/s × ms / (8 bits × 1000)
	if maxData < 1 {
		maxData = 1
	}
	txCap := max(speed/8/4, 4*maxData) // ~250 ms of line time
	m := &media{
		pt: pt, speed: speed, maxData: maxData,
		stats: stats, log: log,
		txCap: txCap, txBuf: make([]byte, 0, txCap),
		kick: make(chan struct{}, 1), space: make(chan struct{}, 1),
		rx: make(chan []byte, rxQueue),
	}
	m.init(conn, remote)
	return m
}

// drainSocket throws away datagrams queued on the line's RTP socket from an
// earlier call, so the new call does not lock onto a stale stream.
func drainSocket(conn *net.UDPConn) {
	buf := make([]byte, 2048)
	_ = conn.SetReadDeadline(time.Now())
	for {
		if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
}

func (m *media) startRecv() { m.run(m.recvLoop) }

func (m *media) startSend() { m.run(m.sendLoop) }

// end stops both directions and waits for them; Read drains what arrived
// and then returns io.EOF. Safe to call more than once.
func (m *media) end() { m.stop() }

func (m *media) isGone() bool {
	select {
	case <-m.gone:
		return true
	default:
		return false
	}
}

// Write queues p for sending at the line rate. It blocks while the send
// buffer is full, like a modem holding CTS off.
func (m *media) Write(p []byte) (int, error) {
	m.wMu.Lock()
	defer m.wMu.Unlock()
	total := 0
	for len(p) > 0 {
		m.txMu.Lock()
		if m.isGone() {
			m.txMu.Unlock()
			return total, io.ErrClosedPipe
		}
		n := min(len(p), m.txCap-len(m.txBuf))
		m.txBuf = append(m.txBuf, p[:n]...)
		m.txMu.Unlock()
		if n > 0 {
			p, total = p[n:], total+n
			select {
			case m.kick <- struct{}{}:
			default:
			}
			continue
		}
		select {
		case <-m.space:
		case <-m.gone:
		}
	}
	return total, nil
}

// Read returns bytes the far modem sent, in order; io.EOF once the call is
// over and everything received has been read.
func (m *media) Read(p []byte) (int, error) {
	m.rMu.Lock()
	defer m.rMu.Unlock()
	for len(m.pending) == 0 {
		select {
		case b := <-m.rx:
			m.pending = b
		case <-m.gone:
			select {
			case b := <-m.rx:
				m.pending = b
			default:
				return 0, io.EOF
			}
		}
	}
	n := copy(p, m.pending)
	m.pending = m.pending[n:]
	return n, nil
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// sendLoop sends what Write queued, at most maxData bytes per packet, paced
// at the connect speed. It sleeps on a timer only while data is pending.
func (m *media) sendLoop() {
	defer m.wg.Done()
	hdr := rtp.Header{
		Version:        2,
		PayloadType:    m.pt,
		SequenceNumber: uint16(randUint32()), // RFC 3550 §5.1: random initial values
		SSRC:           randUint32(),
		Marker:         true, // RFC 3551 §4.1: first packet of a talkspurt
	}
	tsBase := randUint32()
	var sentBytes uint64
	p := pacer{bitRate: m.speed, slack: burstPackets * pktInterval}
	buf := make([]byte, rtpHeaderLen+m.maxData)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-m.kick:
		case <-m.gone:
			return
		}
		for {
			if d := p.wait(time.Now()); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-m.gone:
					return
				}
			}
			m.txMu.Lock()
			n := min(len(m.txBuf), m.maxData)
			if n == 0 {
				m.txMu.Unlock()
				break
			}
			payload := buf[rtpHeaderLen : rtpHeaderLen+n]
			copy(payload, m.txBuf[:n])
			m.txBuf = m.txBuf[:copy(m.txBuf, m.txBuf[n:])]
			m.txMu.Unlock()
			select {
			case m.space <- struct{}{}:
			default:
			}
			// RFC 4040 §3 / RFC 3551 §4.5.14: the clock is 8000 Hz, one tick
			// per octet of the 64 kbit/s channel; the timestamp follows the
			// line time of the data sent so far.
			hdr.Timestamp = tsBase + uint32(sentBytes*8*8000/uint64(m.speed))
			hn, err := hdr.MarshalTo(buf)
			if err != nil || hn != rtpHeaderLen {
				m.log.Error("rtp header", "err", err)
				return
			}
			now := time.Now()
			if _, err := m.conn.WriteToUDPAddrPort(buf[:rtpHeaderLen+n], m.remoteAddr()); err != nil {
				m.log.Debug("rtp send", "err", err)
			}
			p.sent(now, n)
			sentBytes += uint64(n)
			hdr.SequenceNumber++
			hdr.Marker = false
			m.stats.pktSent.Add(1)
			m.stats.bytesSent.Add(uint64(n))
		}
	}
}

// rtpSeq follows one RTP stream's source and sequence numbers.
type rtpSeq struct {
	started bool
	ssrc    uint32
	highest uint16
}

// accept reports whether pkt is the stream's next packet; another
// source's, a late or a duplicate one is counted and refused, a gap is
// counted as lost.
func (q *rtpSeq) accept(pkt *rtp.Packet, stats *mediaCounters) bool {
	if !q.started {
		q.started, q.ssrc, q.highest = true, pkt.SSRC, pkt.SequenceNumber
		return true
	}
	if pkt.SSRC != q.ssrc {
		stats.foreign.Add(1)
		return false
	}
	// RFC 3550 §A.1: sequence numbers compare modulo 2^16.
	d := int16(pkt.SequenceNumber - q.highest)
	if d <= 0 {
		stats.late.Add(1)
		return false
	}
	if d > 1 {
		stats.lost.Add(uint64(d - 1))
	}
	q.highest = pkt.SequenceNumber
	return true
}

// recvLoop reads the line's RTP socket until the call ends. Packets from
// another source than the SDP's address, of another payload type, late or
// duplicated ones are dropped and counted; gaps are counted as lost.
func (m *media) recvLoop() {
	defer m.wg.Done()
	buf := make([]byte, 2048)
	var (
		seq rtpSeq
		pkt rtp.Packet
	)
	for {
		n, from, err := m.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if m.isGone() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			m.log.Warn("rtp receive", "err", err)
			return
		}
		if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != m.remoteAddr() {
			m.stats.foreign.Add(1)
			continue
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil || pkt.Version != 2 {
			m.stats.badPayload.Add(1)
			continue
		}
		if pkt.PayloadType != m.pt {
			m.stats.badPayload.Add(1)
			continue
		}
		if !seq.accept(&pkt, m.stats) {
			continue
		}
		if len(pkt.Payload) == 0 {
			continue
		}
		data := append([]byte(nil), pkt.Payload...)
		select {
		case m.rx <- data:
			m.stats.pktRecv.Add(1)
			m.stats.bytesRecv.Add(uint64(len(data)))
		default:
			m.stats.overrun.Add(1)
		}
	}
}
