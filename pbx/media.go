package pbx

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtp"
	"golang.org/x/net/ipv4"
)

// relay anchors one call's audio in the box: one UDP socket faces each
// side. What arrives on the caller's socket leaves through the callee's
// socket, and back. Both directions are symmetric: we send to a side from
// the port that side sends to (Asterisk does the same).
type relay struct {
	sides [2]*relaySide
	wg    sync.WaitGroup
	once  sync.Once
}

type relaySide struct {
	conn    *net.UDPConn
	rtcp    *net.UDPConn   // RTP port + 1 (RFC 3550 §11)
	local   netip.AddrPort // what we advertise in SDP to this side
	comedia bool           // send to where this side's packets come from (nat=comedia)

	mu         sync.Mutex
	remote     netip.AddrPort // where this side receives
	latched    bool
	rtcpRemote netip.AddrPort // latched RTCP source, if any
	stats      streamStats    // packets received from this side
	last       time.Time      // when this side last sent RTP or RTCP
}

// StreamStats are the counters of one direction of a relayed stream.
type StreamStats struct {
	Packets  uint64
	Bytes    uint64
	Lost     uint64  // expected - received (RFC 3550 §6.4.1, never negative)
	JitterMS float64 // RFC 3550 §6.4.1 interarrival jitter, for an 8 kHz clock
	Dropped  uint64  // datagrams that were not RTP or had nowhere to go
}

type streamStats struct {
	StreamStats
	started     bool
	baseSeq     uint32
	maxSeq      uint16
	cycles      uint32
	lastTransit int64
	jitter      float64 // in timestamp units
	firstArr    time.Time
}

// update applies RFC 3550 appendix A.1 (sequence) and A.8 (jitter).
func (st *streamStats) update(h *rtp.Header, n int, now time.Time) {
	st.Packets++
	st.Bytes += uint64(n)
	const clock = 8000 // G.711; other codecs give a scaled value
	if !st.started {
		st.started = true
		st.baseSeq, st.maxSeq = uint32(h.SequenceNumber), h.SequenceNumber
		st.firstArr = now
		st.lastTransit = int64(now.Sub(st.firstArr).Seconds()*clock) - int64(h.Timestamp)
		return
	}
	if d := h.SequenceNumber - st.maxSeq; d < 0x8000 && d != 0 {
		if h.SequenceNumber < st.maxSeq {
			st.cycles += 1 << 16
		}
		st.maxSeq = h.SequenceNumber
	}
	arrival := int64(now.Sub(st.firstArr).Seconds() * clock)
	transit := arrival - int64(h.Timestamp)
	d := float64(transit - st.lastTransit)
	if d < 0 {
		d = -d
	}
	st.lastTransit = transit
	st.jitter += (d - st.jitter) / 16
	expected := uint64(st.cycles) + uint64(st.maxSeq) - uint64(st.baseSeq) + 1
	if expected > st.Packets {
		st.Lost = expected - st.Packets
	} else {
		st.Lost = 0
	}
	st.JitterMS = st.jitter / clock * 1000
}

// newRelay opens the two sockets on an even port of [RTPStart, RTPEnd).
func (s *Server) newRelay(ip netip.Addr, callerComedia bool) (*relay, error) {
	bindIP := s.addr.Addr()
	s.mu.Lock()
	lo, hi := s.cfg.General.RTPStart, s.cfg.General.RTPEnd
	s.mu.Unlock()
	r := &relay{}
	for i := range r.sides {
		conn, rtcp, err := listenRTP(bindIP, lo, hi)
		if err != nil {
			r.close()
			return nil, err
		}
		port := conn.LocalAddr().(*net.UDPAddr).Port
		r.sides[i] = &relaySide{conn: conn, rtcp: rtcp, local: netip.AddrPortFrom(ip, uint16(port))}
	}
	r.sides[sideCaller].comedia = callerComedia
	for i := range r.sides {
		r.wg.Add(2)
		go r.pump(i)
		go r.pumpRTCP(i)
	}
	return r, nil
}

var errNoPorts = errors.New("no free RTP port")

// listenRTP binds an even RTP port and the RTCP port above it.
func listenRTP(ip netip.Addr, lo, hi int) (*net.UDPConn, *net.UDPConn, error) {
	n := (hi - lo) / 2
	if n <= 0 {
		return nil, nil, errNoPorts
	}
	lo += lo % 2
	start := rand.IntN(n)
	for i := 0; i < n && i < 200; i++ {
		port := lo + 2*((start+i)%n)
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			continue
		}
		c2, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port+1))))
		if err != nil {
			c.Close()
			continue
		}
		return c, c2, nil
	}
	return nil, nil, fmt.Errorf("%w in %d-%d", errNoPorts, lo, hi)
}

// addr is what we advertise to side.
func (r *relay) addr(side int) netip.AddrPort { return r.sides[side].local }

// setRemote takes the address a side wants its media at from its SDP,
// unless symmetric RTP already latched onto where its packets come from.
func (r *relay) setRemote(side int, sdp []byte) {
	ap, _, _ := sdpAudio(sdp)
	if !ap.IsValid() {
		return
	}
	rs := r.sides[side]
	rs.mu.Lock()
	if !rs.latched {
		rs.remote = ap
	}
	rs.mu.Unlock()
}

// setComedia makes the relay answer side where its packets come from.
func (r *relay) setComedia(side int, on bool) {
	rs := r.sides[side]
	rs.mu.Lock()
	rs.comedia = on
	rs.mu.Unlock()
}

// setRemoteAddr sets where side receives, unless latched.
func (r *relay) setRemoteAddr(side int, ap netip.AddrPort) {
	rs := r.sides[side]
	rs.mu.Lock()
	if !rs.latched {
		rs.remote = ap
	}
	rs.mu.Unlock()
}

// relayBatch is how many datagrams one recvmmsg/sendmmsg of the relay
// moves. At 50 packets/s a socket mostly holds one; when the box falls
// behind (a loaded machine, 1,000 calls) the queue grows and one system
// call then takes what is waiting, instead of one call per packet, which
// is where the relay's time goes (CPU profile at 1,000 calls: 80 % in
// sendto/recvfrom).
const relayBatch = 8

// pump forwards what side `from` sends to the other side.
func (r *relay) pump(from int) {
	defer r.wg.Done()
	in, out := r.sides[from], r.sides[1-from]
	rd, wr := ipv4.NewPacketConn(in.conn), ipv4.NewPacketConn(out.conn)
	msgs := make([]ipv4.Message, relayBatch)
	fwd := make([]ipv4.Message, relayBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
		fwd[i].Buffers = [][]byte{nil}
	}
	var (
		h       rtp.Header
		dstAddr *net.UDPAddr // dst as sendmmsg wants it, made when dst changes
		dstFor  netip.AddrPort
	)
	for {
		n, err := rd.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// e.g. an ICMP error queued on the socket; a pause so that an
			// error that repeats cannot spin the loop
			time.Sleep(time.Millisecond)
			continue
		}
		now := time.Now()
		k := 0
		in.mu.Lock()
		for _, m := range msgs[:n] {
			if ua, ok := m.Addr.(*net.UDPAddr); ok && in.comedia {
				src := ua.AddrPort()
				src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
				if !in.latched || in.remote != src {
					in.remote, in.latched = src, true // comedia: answer where it comes from
				}
			}
			b := m.Buffers[0][:m.N]
			if _, perr := h.Unmarshal(b); perr != nil {
				in.stats.Dropped++
				continue
			}
			in.stats.update(&h, m.N, now)
			in.last = now
			fwd[k].Buffers[0] = b
			k++
		}
		in.mu.Unlock()
		if k == 0 {
			continue
		}
		out.mu.Lock()
		dst := out.remote
		out.mu.Unlock()
		if !dst.IsValid() {
			in.mu.Lock()
			in.stats.Dropped += uint64(k)
			in.mu.Unlock()
			continue
		}
		if dst != dstFor {
			dstFor, dstAddr = dst, net.UDPAddrFromAddrPort(dst)
		}
		for i := range fwd[:k] {
			fwd[i].Addr = dstAddr
		}
		for off := 0; off < k; {
			m, err := wr.WriteBatch(fwd[off:k], 0)
			if err != nil || m <= 0 {
				// sendmmsg refused (e.g. a full buffer): what is left
				// goes one by one, as before batching.
				for _, f := range fwd[off+max(m, 0) : k] {
					_, _ = out.conn.WriteToUDPAddrPort(f.Buffers[0], dst)
				}
				break
			}
			off += m
		}
	}
}

// pumpRTCP forwards RTCP (RTP port + 1) the same way, without counters.
func (r *relay) pumpRTCP(from int) {
	defer r.wg.Done()
	in, out := r.sides[from], r.sides[1-from]
	buf := make([]byte, 1500)
	for {
		n, src, err := in.rtcp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		in.mu.Lock()
		if in.comedia {
			in.rtcpRemote = src
		}
		in.last = time.Now() // RTCP counts as activity (chan_sip's rtptimeout)
		in.mu.Unlock()
		out.mu.Lock()
		dst := out.rtcpRemote
		if !dst.IsValid() && out.remote.IsValid() {
			dst = netip.AddrPortFrom(out.remote.Addr(), out.remote.Port()+1)
		}
		out.mu.Unlock()
		if dst.IsValid() {
			_, _ = out.rtcp.WriteToUDPAddrPort(buf[:n], dst)
		}
	}
}

// Stats returns the counters of both directions: [0] from the caller,
// [1] from the callee.
func (r *relay) Stats() [2]StreamStats {
	var out [2]StreamStats
	for i, rs := range r.sides {
		if rs == nil {
			continue
		}
		rs.mu.Lock()
		out[i] = rs.stats.StreamStats
		rs.mu.Unlock()
	}
	return out
}

// lastRecv is when side last sent RTP or RTCP (zero: never).
func (r *relay) lastRecv(side int) time.Time {
	rs := r.sides[side]
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.last
}

func (r *relay) close() {
	r.once.Do(func() {
		for _, rs := range r.sides {
			if rs != nil {
				rs.conn.Close()
				rs.rtcp.Close()
			}
		}
	})
	r.wg.Wait()
}
