// Package rtpload is an RTP load generator for media relays: N calls,
// both directions, G.711 at 20 ms. Each packet carries its stream, its
// sequence number and its send time in the payload, so the receiver
// measures loss, one-way latency and interarrival jitter (RFC 3550
// §6.4.1) of every stream. Relays are set up through the Relay interface
// (rtpengine's ng protocol in ng.go; a direct path for the baseline).
package rtpload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Relay sets up one call's media: a and b are where the caller and the
// callee receive; it returns where each must send (toFromA: the caller
// sends there and the relay forwards to b).
type Relay interface {
	Setup(ctx context.Context, id int, a, b netip.AddrPort) (toFromA, toFromB netip.AddrPort, err error)
	Teardown(ctx context.Context, id int) error
}

// Direct is the baseline: no relay, each side sends straight to the other.
type Direct struct{}

// Setup implements Relay.
func (Direct) Setup(_ context.Context, _ int, a, b netip.AddrPort) (netip.AddrPort, netip.AddrPort, error) {
	return b, a, nil
}

// Teardown implements Relay.
func (Direct) Teardown(context.Context, int) error { return nil }

// Options of a run.
type Options struct {
	Calls    int
	Duration time.Duration // of sending
	IP       netip.Addr    // the generator's sockets (default 127.0.0.1)
	Senders  int           // sending goroutines (default 2)
}

// Result of a run. Latency is one way, send to receive, through the relay.
type Result struct {
	Calls, Streams   int
	Sent, Received   uint64
	Lost             uint64 // sent - received, per stream, never negative
	Late             uint64 // arrived out of order
	Duplicates       uint64
	P50, P99, Max    time.Duration
	JitterMeanMS     float64 // mean of the streams' RFC 3550 jitter at the end
	JitterMaxMS      float64 // the worst stream's
	SetupTime        time.Duration
	SetupFailed      int
	TooLateToMeasure uint64 // latencies above the histogram's range (counted in Max)
}

// LossPct is the lost share of what was sent, in %.
func (r Result) LossPct() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 100 * float64(r.Lost) / float64(r.Sent)
}

const (
	ptime       = 20 * time.Millisecond
	payloadSize = 160 // 20 ms of G.711 at 8 kHz
	// The payload starts with: send time (ns since the run's base, 8
	// bytes), stream index (4), sequence number (4, not wrapping).
	payloadHead = 16
	bucket      = 10 * time.Microsecond
	buckets     = 200_000 // 2 s
)

type stream struct {
	idx    int
	conn   *net.UDPConn   // sends from here (and receives the other direction)
	to     netip.AddrPort // relay's address for this direction
	ssrc   uint32
	phase  time.Duration
	sent   atomic.Uint64
	recv   uint64 // as received on this stream's destination socket
	late   uint64
	dups   uint64
	maxSeq int64
	seen   []uint64 // bitmap of received sequence numbers, for duplicates
	// RFC 3550 A.8 jitter in ns, from send time to arrival
	lastTransit int64
	jitter      float64
}

type histogram struct {
	b     []atomic.Uint64
	over  atomic.Uint64
	max   atomic.Int64
	count atomic.Uint64
}

func (h *histogram) add(d time.Duration) {
	h.count.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
	i := int(d / bucket)
	if i < 0 {
		i = 0
	}
	if i >= len(h.b) {
		h.over.Add(1)
		return
	}
	h.b[i].Add(1)
}

// quantile is the upper edge of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(n)))
	var sum uint64
	for i := range h.b {
		sum += h.b[i].Load()
		if sum >= want {
			return time.Duration(i+1) * bucket
		}
	}
	return time.Duration(h.max.Load())
}

// Run sets up opt.Calls calls through r, sends G.711 both ways for
// opt.Duration, waits for the stragglers and tears the calls down.
func Run(ctx context.Context, r Relay, opt Options) (Result, error) {
	if opt.Calls <= 0 || opt.Duration <= 0 {
		return Result{}, errors.New("rtpload: calls and duration must be positive")
	}
	if !opt.IP.IsValid() {
		opt.IP = netip.MustParseAddr("127.0.0.1")
	}
	if opt.Senders <= 0 {
		opt.Senders = 2
	}
	res := Result{Calls: opt.Calls, Streams: 2 * opt.Calls}
	// stream 2i: caller -> callee of call i; 2i+1: callee -> caller.
	streams := make([]*stream, 2*opt.Calls)
	conns := make([]*net.UDPConn, 0, 2*opt.Calls)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range streams {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(opt.IP, 0)))
		if err != nil {
			return res, fmt.Errorf("rtpload: %w", err)
		}
		_ = c.SetReadBuffer(256 << 10)
		conns = append(conns, c)
		streams[i] = &stream{idx: i, conn: c, ssrc: uint32(0x5eed0000 + i), maxSeq: -1}
	}
	t0 := time.Now()
	set := make([]bool, opt.Calls)
	{
		// Set up 16 calls at a time: a control protocol over UDP.
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		var mu sync.Mutex
		var firstErr error
		for i := 0; i < opt.Calls; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				a, b := streams[2*i].conn.LocalAddr().(*net.UDPAddr).AddrPort(), streams[2*i+1].conn.LocalAddr().(*net.UDPAddr).AddrPort()
				toA, toB, err := r.Setup(ctx, i, a, b)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.SetupFailed++
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				streams[2*i].to, streams[2*i+1].to = toA, toB
				set[i] = true
			}()
		}
		wg.Wait()
		if firstErr != nil && res.SetupFailed == opt.Calls {
			return res, fmt.Errorf("rtpload: no call set up: %w", firstErr)
		}
	}
	res.SetupTime = time.Since(t0)
	defer func() {
		tctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i, ok := range set {
			if ok {
				_ = r.Teardown(tctx, i)
			}
		}
	}()

	var active []*stream
	for i, s := range streams {
		if set[i/2] {
			active = append(active, s)
		}
	}
	// Spread the streams' send times evenly over the 20 ms, as
	// independent calls are.
	for k, s := range active {
		s.phase = time.Duration(k) * ptime / time.Duration(len(active))
	}
	packets := int(opt.Duration / ptime)
	h := &histogram{b: make([]atomic.Uint64, buckets)}
	base := time.Now().Add(50 * time.Millisecond)

	// Receivers: one goroutine per socket; stream 2i's packets arrive on
	// stream 2i+1's socket and the other way round.
	var rwg sync.WaitGroup
	for _, s := range active {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			receive(s.conn, streams, base, h)
		}()
	}
	var swg sync.WaitGroup
	for g := 0; g < opt.Senders; g++ {
		var mine []*stream
		for k := g; k < len(active); k += opt.Senders {
			mine = append(mine, active[k])
		}
		swg.Add(1)
		go func() {
			defer swg.Done()
			send(ctx, mine, base, packets)
		}()
	}
	swg.Wait()
	// Stragglers: anything later than this counts as lost.
	time.Sleep(500 * time.Millisecond)
	for _, s := range active {
		_ = s.conn.SetReadDeadline(time.Now())
	}
	rwg.Wait()

	var jsum float64
	for _, s := range active {
		sent := s.sent.Load()
		res.Sent += sent
		// s.recv counts stream s's packets, kept by the peer's receiver.
		res.Received += s.recv
		if sent > s.recv {
			res.Lost += sent - s.recv
		}
		res.Late += s.late
		res.Duplicates += s.dups
		j := s.jitter / 1e6
		jsum += j
		res.JitterMaxMS = max(res.JitterMaxMS, j)
	}
	if len(active) > 0 {
		res.JitterMeanMS = jsum / float64(len(active))
	}
	res.P50, res.P99, res.Max = h.quantile(0.50), h.quantile(0.99), time.Duration(h.max.Load())
	res.TooLateToMeasure = h.over.Load()
	return res, ctx.Err()
}

// send paces its streams at 20 ms each, at their phases.
func send(ctx context.Context, mine []*stream, base time.Time, packets int) {
	slices.SortFunc(mine, func(a, b *stream) int { return int(a.phase - b.phase) })
	pkt := make([]byte, 12+payloadSize)
	for i := 12 + payloadHead; i < len(pkt); i++ {
		pkt[i] = 0xff // µ-law silence
	}
	h := rtp.Header{Version: 2, PayloadType: 0}
	for k := 0; k < packets; k++ {
		if ctx.Err() != nil {
			return
		}
		for _, s := range mine {
			due := base.Add(time.Duration(k)*ptime + s.phase)
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			h.SequenceNumber = uint16(k)
			h.Timestamp = uint32(k * payloadSize)
			h.SSRC = s.ssrc
			h.Marker = k == 0
			if _, err := h.MarshalTo(pkt); err != nil {
				continue
			}
			p := pkt[12:]
			binary.BigEndian.PutUint32(p[8:], uint32(s.idx))
			binary.BigEndian.PutUint32(p[12:], uint32(k))
			binary.BigEndian.PutUint64(p[0:], uint64(time.Since(base)))
			if _, err := s.conn.WriteToUDPAddrPort(pkt, s.to); err == nil {
				s.sent.Add(1)
			}
		}
	}
}

// receive reads one socket until its deadline; the stream a packet
// belongs to is in its payload, and only this goroutine receives it.
func receive(conn *net.UDPConn, streams []*stream, base time.Time, hist *histogram) {
	buf := make([]byte, 2048)
	var h rtp.Header
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		now := time.Since(base)
		off, err := h.Unmarshal(buf[:n])
		if err != nil || n-off < payloadHead {
			continue
		}
		p := buf[off:n]
		sent := time.Duration(binary.BigEndian.Uint64(p[0:]))
		idx := int(binary.BigEndian.Uint32(p[8:]))
		seq := int64(binary.BigEndian.Uint32(p[12:]))
		if idx < 0 || idx >= len(streams) {
			continue
		}
		s := streams[idx]
		w := int(seq / 64)
		for len(s.seen) <= w {
			s.seen = append(s.seen, 0)
		}
		if s.seen[w]&(1<<(seq%64)) != 0 {
			s.dups++
			continue
		}
		s.seen[w] |= 1 << (seq % 64)
		s.recv++
		if seq < s.maxSeq {
			s.late++
		} else {
			s.maxSeq = seq
		}
		lat := now - sent
		hist.add(lat)
		// RFC 3550 A.8 with the send time for the RTP timestamp (the
		// same clock at both ends, so transit is the one-way delay).
		transit := int64(lat)
		if s.recv > 1 {
			d := float64(transit - s.lastTransit)
			s.jitter += (math.Abs(d) - s.jitter) / 16
		}
		s.lastTransit = transit
	}
}
