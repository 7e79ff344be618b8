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
	"golang.org/x/net/ipv4"
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
	Sockets  int           // per side, shared by the calls (default 8)
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
	// How late the generator itself sent, behind each packet's 20 ms
	// schedule: a loaded machine shows here first, not in the relay.
	SendLateP99 time.Duration
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
	idx   int
	sock  int          // index of the socket it leaves from
	to    *net.UDPAddr // relay's address for this direction
	ssrc  uint32
	phase time.Duration
	sent  atomic.Uint64
	// Kept by the one goroutine that receives this stream.
	recv   uint64
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
	if opt.Sockets <= 0 {
		opt.Sockets = 8
	}
	res := Result{Calls: opt.Calls, Streams: 2 * opt.Calls}
	// Call i's caller side is socket 2*(i%K), its callee side socket
	// 2*(i%K)+1: a few sockets carry all calls, each packet names its
	// stream, and sendmmsg/recvmmsg batches keep the generator's own
	// cost low next to the relay's (which has two sockets per call).
	socks := make([]*net.UDPConn, 0, 2*opt.Sockets)
	defer func() {
		for _, c := range socks {
			c.Close()
		}
	}()
	for range 2 * opt.Sockets {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(opt.IP, 0)))
		if err != nil {
			return res, fmt.Errorf("rtpload: %w", err)
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		socks = append(socks, c)
	}
	// stream 2i: caller -> callee of call i; 2i+1: callee -> caller.
	streams := make([]*stream, 2*opt.Calls)
	for i := range streams {
		sock := 2*((i/2)%opt.Sockets) + i%2
		streams[i] = &stream{idx: i, sock: sock, ssrc: uint32(0x5eed0000 + i), maxSeq: -1}
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
				a, b := socks[streams[2*i].sock].LocalAddr().(*net.UDPAddr).AddrPort(), socks[streams[2*i+1].sock].LocalAddr().(*net.UDPAddr).AddrPort()
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
				streams[2*i].to, streams[2*i+1].to = net.UDPAddrFromAddrPort(toA), net.UDPAddrFromAddrPort(toB)
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
	lateness := &histogram{b: make([]atomic.Uint64, buckets)}
	base := time.Now().Add(50 * time.Millisecond)

	// Receivers: one goroutine per socket. Stream 2i's packets arrive
	// on its callee's socket, 2i+1's on its caller's: each stream has
	// one receiver.
	var rwg sync.WaitGroup
	for _, c := range socks {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			receive(c, streams, base, h)
		}()
	}
	// Senders: one goroutine per socket, for the streams leaving it.
	var swg sync.WaitGroup
	for k, c := range socks {
		var mine []*stream
		for _, st := range active {
			if st.sock == k {
				mine = append(mine, st)
			}
		}
		swg.Add(1)
		go func() {
			defer swg.Done()
			send(ctx, c, mine, base, packets, lateness)
		}()
	}
	swg.Wait()
	// Stragglers: anything later than this counts as lost.
	time.Sleep(500 * time.Millisecond)
	for _, c := range socks {
		_ = c.SetReadDeadline(time.Now())
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
	res.SendLateP99 = lateness.quantile(0.99)
	return res, ctx.Err()
}

// send paces its streams at 20 ms each, at their phases: at each wake
// it sends what is due in one sendmmsg.
func send(ctx context.Context, c *net.UDPConn, mine []*stream, base time.Time, packets int, lateness *histogram) {
	slices.SortFunc(mine, func(a, b *stream) int { return int(a.phase - b.phase) })
	pc := ipv4.NewPacketConn(c)
	const batch = 64
	msgs := make([]ipv4.Message, batch)
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 12+payloadSize)
		for j := 12 + payloadHead; j < len(bufs[i]); j++ {
			bufs[i][j] = 0xff // µ-law silence
		}
		msgs[i].Buffers = [][]byte{bufs[i]}
	}
	whom := make([]*stream, batch)
	flush := func(n int) {
		for off := 0; off < n; {
			m, err := pc.WriteBatch(msgs[off:n], 0)
			if err != nil || m == 0 {
				break
			}
			for _, st := range whom[off : off+m] {
				st.sent.Add(1)
			}
			off += m
		}
	}
	h := rtp.Header{Version: 2, PayloadType: 0}
	total := packets * len(mine)
	for q := 0; q < total; {
		if ctx.Err() != nil {
			return
		}
		k, st := q/len(mine), mine[q%len(mine)]
		due := time.Duration(k)*ptime + st.phase
		if d := due - time.Since(base); d > 0 {
			time.Sleep(d)
		}
		// Everything due by now, up to a batch.
		now := time.Since(base)
		n := 0
		for ; q < total && n < batch; q++ {
			k, st = q/len(mine), mine[q%len(mine)]
			due = time.Duration(k)*ptime + st.phase
			if due > now {
				break
			}
			h.SequenceNumber = uint16(k)
			h.Timestamp = uint32(k * payloadSize)
			h.SSRC = st.ssrc
			h.Marker = k == 0
			pkt := bufs[n]
			if _, err := h.MarshalTo(pkt); err != nil {
				continue
			}
			p := pkt[12:]
			binary.BigEndian.PutUint64(p[0:], uint64(now))
			binary.BigEndian.PutUint32(p[8:], uint32(st.idx))
			binary.BigEndian.PutUint32(p[12:], uint32(k))
			msgs[n].Addr = st.to
			whom[n] = st
			lateness.add(now - due)
			n++
		}
		flush(n)
	}
}

// receive reads one socket until its deadline, a batch per recvmmsg;
// the stream a packet belongs to is in its payload, and only this
// goroutine receives that stream.
func receive(c *net.UDPConn, streams []*stream, base time.Time, hist *histogram) {
	pc := ipv4.NewPacketConn(c)
	const batch = 64
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	var h rtp.Header
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			return
		}
		now := time.Since(base)
		for _, m := range msgs[:n] {
			record(m.Buffers[0][:m.N], &h, streams, now, hist)
		}
	}
}

func record(b []byte, h *rtp.Header, streams []*stream, now time.Duration, hist *histogram) {
	off, err := h.Unmarshal(b)
	if err != nil || len(b)-off < payloadHead {
		return
	}
	p := b[off:]
	sent := time.Duration(binary.BigEndian.Uint64(p[0:]))
	idx := int(binary.BigEndian.Uint32(p[8:]))
	seq := int64(binary.BigEndian.Uint32(p[12:]))
	if idx < 0 || idx >= len(streams) || seq > 1<<24 {
		return
	}
	s := streams[idx]
	w := int(seq / 64)
	for len(s.seen) <= w {
		s.seen = append(s.seen, 0)
	}
	if s.seen[w]&(1<<(seq%64)) != 0 {
		s.dups++
		return
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
	// RFC 3550 A.8 with the send time for the RTP timestamp (the same
	// clock at both ends, so transit is the one-way delay).
	transit := int64(lat)
	if s.recv > 1 {
		d := float64(transit - s.lastTransit)
		s.jitter += (math.Abs(d) - s.jitter) / 16
	}
	s.lastTransit = transit
}
