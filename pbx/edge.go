package pbx

import (
	"bytes"
	"errors"
	"hash/fnv"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The request entry. Every datagram is read here, by our own loop on the
// socket Serve was given, before sipgo sees anything:
//
//  1. a banned or over-rate source is dropped before any parse
//     (the trusted sources, where a registered peer or a fixed host is,
//     are exempt from both);
//  2. the datagram is parsed once; malformed ones are counted and dropped;
//  3. what needs no state is answered statelessly, like Kamailio's sl
//     module (sl_send_reply): OPTIONS outside a dialog, every 401/403/404
//     of admission, 481 to requests for dialogs we do not have, 405, and
//     503 when the box sheds load. One response, no transaction, no
//     retransmission, never larger than the request (RFC 3261 §8.2.6 and
//     §17.2 allow a UAS to answer a request it keeps no state for; an
//     unauthenticated source must not get an amplifier);
//  4. the rest (authenticated REGISTER/INVITE, in-dialog requests,
//     responses) is handed to sipgo's transaction layer through feedConn.
//
// sipgo remembers every source address its UDP read loop has seen, for as
// long as the loop runs (sip/transport_udp.go readListenerConnection:
// acceptedAddr and the connection pool). feeder restarts that loop on a
// fresh feedConn each time feedSources distinct sources have been handed
// over, which hands the old entries back: memory per source is bounded.

const (
	// feedSources is how many distinct sources one sipgo read loop sees
	// before it is replaced.
	feedSources = 2048
	// feedQueue is how many datagrams may wait for sipgo; beyond it they
	// are dropped (the sender retransmits over UDP), and past half of it
	// new INVITEs get 503. sipgo's one read loop takes ~10 µs a datagram
	// (parse, hand-off), so half the queue is ~10 ms of its work: enough
	// to ride out a time slice lost to another process or a GC pause. At
	// 256 (128 to shed) a loaded machine's scheduling stalls alone made
	// the box refuse most calls at 200 calls/s that it then served within
	// 40 ms (bench-compare, 2026-12-06).
	feedQueue = 2048
	// strangerRate bounds the datagrams a second parsed from addresses
	// where no peer is, all of them together (bursts of twice as many).
	strangerRate = 2000
	// readBuffer is the socket receive buffer asked for: room for a burst
	// while the loop sheds a flood.
	readBuffer = 1 << 20
	// maxDatagram is the largest UDP payload.
	maxDatagram = 65535
	// statelessTagPrefix marks the To-tag of our stateless responses, so
	// the ACK to a stateless 4xx is absorbed here (RFC 3261 §17.2.1: the
	// ACK of a non-2xx final response belongs to the transaction we never
	// made).
	statelessTagPrefix = "sl"
	// retryAfter is the Retry-After of a 503 while the box sheds load.
	retryAfter = "5"
)

func init() {
	// RFC 3261 §18.1.1 wants a request over 1300 bytes sent over a
	// congestion-controlled transport; sipgo refuses such a datagram
	// (ErrUDPMTUCongestion) when it cannot switch. ATAs speak UDP only
	// and the box has no TCP: like chan_sip, send it over UDP, which
	// fragments at the IP layer, rather than fail the call.
	sip.UDPMTUSize = maxDatagram + 200
}

// edgeCounters are what the entry counted; all monotonic.
type edgeCounters struct {
	rateLimited  atomic.Uint64 // datagrams dropped by the per-source rate limit
	stateless    atomic.Uint64 // stateless responses sent
	statelessIn  atomic.Uint64 // bytes of the requests answered statelessly
	statelessOut atomic.Uint64 // bytes of those responses
	noAmplify    atomic.Uint64 // requests left unanswered: the answer would have been larger
	throttled    atomic.Uint64 // guesses refused by the per-name guess limit
	shed         atomic.Uint64 // INVITEs answered 503 because the box was full
	queueFull    atomic.Uint64 // datagrams dropped because sipgo's queue was full
	absorbed     atomic.Uint64 // ACKs to stateless responses
}

// EdgeStats are the entry's counters, for status and benchmarks.
type EdgeStats struct {
	Malformed, Banned, AuthFailures, RateLimited, Stateless, StatelessBytesIn, StatelessBytesOut,
	NotAnswered, Throttled, Shed, QueueFull, Absorbed uint64
}

// EdgeStats returns the counters of the request entry.
func (s *Server) EdgeStats() EdgeStats {
	e := &s.edge
	return EdgeStats{
		Malformed: s.counters.malformed.Load(), Banned: s.counters.banned.Load(), AuthFailures: s.counters.authFail.Load(),
		RateLimited: e.rateLimited.Load(), Stateless: e.stateless.Load(), StatelessBytesIn: e.statelessIn.Load(),
		StatelessBytesOut: e.statelessOut.Load(), NotAnswered: e.noAmplify.Load(), Throttled: e.throttled.Load(),
		Shed: e.shed.Load(), QueueFull: e.queueFull.Load(), Absorbed: e.absorbed.Load(),
	}
}

// datagram is one packet on its way to sipgo.
type datagram struct {
	b    []byte
	from net.Addr
}

// feedConn is the net.PacketConn sipgo's UDP transport reads: datagrams
// come from our read loop; writes go straight to the real socket. Close
// ends sipgo's read loop and leaves the socket open.
type feedConn struct {
	net.PacketConn
	ch      chan datagram
	done    chan struct{}
	started chan struct{}
	once    sync.Once
	start   sync.Once
}

func newFeedConn(c net.PacketConn) *feedConn {
	return &feedConn{PacketConn: c, ch: make(chan datagram, feedQueue), done: make(chan struct{}), started: make(chan struct{})}
}

func (f *feedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	f.start.Do(func() { close(f.started) })
	select {
	case d := <-f.ch:
		return copy(p, d.b), d.from, nil
	case <-f.done:
		select { // what was queued before the switch still goes through
		case d := <-f.ch:
			return copy(p, d.b), d.from, nil
		default:
			return 0, nil, net.ErrClosed
		}
	}
}

func (f *feedConn) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

// feeder owns the current feedConn and replaces it as sources add up.
// Shared by the read loops: mu guards the generation switch.
type feeder struct {
	conn  net.PacketConn
	serve func(net.PacketConn) error
	mu    sync.Mutex
	cur   *feedConn
	seen  map[netip.AddrPort]struct{}
	wg    sync.WaitGroup
	gens  int
}

func (f *feeder) startGen() {
	fc := newFeedConn(f.conn)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = f.serve(fc)
	}()
	// sipgo registers the new connection in its pool before its first
	// read, so once it reads, the old loop may go: its clean-up only
	// deletes pool entries that still point at the old connection.
	select {
	case <-fc.started:
	case <-time.After(2 * time.Second):
	}
	f.cur = fc
	f.seen = make(map[netip.AddrPort]struct{}, 64)
	f.gens++
}

// push hands a datagram to sipgo; false if its queue is full.
func (f *feeder) push(b []byte, from net.Addr, src netip.AddrPort) bool {
	d := datagram{bytes.Clone(b), from}
	f.mu.Lock()
	if _, ok := f.seen[src]; !ok {
		if len(f.seen) >= feedSources {
			old := f.cur
			f.startGen()
			old.Close()
		}
		f.seen[src] = struct{}{}
	}
	cur := f.cur
	f.mu.Unlock()
	select {
	case cur.ch <- d:
		return true
	default:
		return false
	}
}

func (f *feeder) busy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.cur.ch) > feedQueue/2
}

func (f *feeder) stop() {
	f.mu.Lock()
	f.cur.Close()
	f.mu.Unlock()
	f.wg.Wait()
}

// limiter is a token bucket per key (a source address, a peer name) in a
// fixed table: O(1) per request and no memory per key, however many keys
// an attacker makes up. A slot whose owner has been quiet long enough to
// have a full bucket is taken over; otherwise two keys hashed to one slot
// share it (at worst two strangers slow each other: the box's own peers
// are exempt where they are).
type limiter struct {
	mu    sync.Mutex
	rate  float64 // tokens per second; <= 0: no limit
	burst float64
	slots [4096]limitSlot
}

type limitSlot struct {
	key    uint64
	tokens float64
	last   time.Time
}

func (l *limiter) set(rate float64, burst float64) {
	l.mu.Lock()
	l.rate, l.burst = rate, max(burst, 1)
	l.mu.Unlock()
}

func addrKey(a netip.Addr) uint64 {
	h := fnv.New64a()
	b := a.As16()
	h.Write(b[:])
	return h.Sum64()
}

func nameKey(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

func (l *limiter) allow(key uint64, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rate <= 0 {
		return true
	}
	sl := &l.slots[key%uint64(len(l.slots))]
	refill := now.Sub(sl.last).Seconds() * l.rate
	if sl.key != key && (sl.last.IsZero() || sl.tokens+refill >= l.burst) {
		*sl = limitSlot{key: key, tokens: l.burst, last: now}
	} else {
		sl.tokens = min(l.burst, sl.tokens+refill)
		sl.last = now
	}
	if sl.tokens < 1 {
		return false
	}
	sl.tokens--
	return true
}

// trustSet is where the box's own peers are: their registered
// address:port and fixed hosts. Rebuilt from the peers every
// trustRefresh by the read loop.
type trustSet struct {
	exact map[netip.AddrPort]bool
	hosts map[netip.Addr]bool // fixed host= peers: any port
	ips   map[netip.Addr]bool // where registered peers are: not rate-limited, still bannable
	built time.Time
}

const trustRefresh = 250 * time.Millisecond

// entryReaders is how many read loops share the SIP socket: one per CPU
// the runtime uses, at most 4 (a Raspberry Pi has 4 cores; more readers
// than cores only add contention).
func entryReaders() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// has reports whether src is a peer's own address:port (or a fixed
// host): never banned, never rate-limited.
func (t *trustSet) has(src netip.AddrPort) bool {
	return t.exact[src] || t.hosts[src.Addr()]
}

// near reports whether src shares its address with a registered peer
// (another line of the same ATA, the same NAT): not rate-limited per
// source, since that limit would be shared with the peer; a ban still
// applies, as the nonce binding proves the failures came from there.
func (t *trustSet) near(src netip.AddrPort) bool { return t.ips[src.Addr()] }

func (s *Server) buildTrust(now time.Time) *trustSet {
	t := &trustSet{exact: map[netip.AddrPort]bool{}, hosts: map[netip.Addr]bool{}, ips: map[netip.Addr]bool{}, built: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if b := p.binding; b != nil {
			t.exact[b.Source] = true
			t.ips[b.Source.Addr()] = true
			if ap, ok := contactAddr(b.Contact); ok {
				t.exact[ap] = true
			}
			continue
		}
		if ap, err := netip.ParseAddrPort(p.cfg.Host); err == nil {
			t.hosts[ap.Addr().Unmap()] = true
		} else if a, err := netip.ParseAddr(p.cfg.Host); err == nil {
			t.hosts[a.Unmap()] = true
		}
	}
	return t
}

// banned reports whether a is banned now, dropping an expired ban.
func (s *Server) banned(a netip.Addr, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.bans[a]
	if ok && !now.Before(until) {
		delete(s.bans, a)
		return false
	}
	return ok
}

// currentTrust returns the trust set, rebuilt when older than
// trustRefresh by the one read loop that sees it first (the others go on
// with the old one meanwhile: the rebuild walks every peer).
func (s *Server) currentTrust(now time.Time) *trustSet {
	t := s.trust.Load()
	if t != nil && now.Sub(t.built) <= trustRefresh && !now.Before(t.built) {
		return t
	}
	if t != nil && !s.trustBuilding.CompareAndSwap(false, true) {
		return t
	}
	t = s.buildTrust(now)
	s.trust.Store(t)
	s.trustBuilding.Store(false)
	return t
}

// readLoop reads conn until it is closed. Several run at once on the
// one socket (entryReaders): parsing and admission, the digest above all,
// are the entry's cost, and one loop is one core.
func (s *Server) readLoop(conn net.PacketConn, f *feeder) {
	buf := make([]byte, maxDatagram)
	p := sip.NewParser()
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Error("reading the SIP socket", "err", err)
			time.Sleep(10 * time.Millisecond) // a hard error must not spin
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := ua.AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		now := s.now()
		trust := s.currentTrust(now)
		s.datagram(conn, f, p, buf[:n], from, src, trust.has(src), trust.near(src), now)
	}
}

// datagram is steps 1-4 of the entry for one packet.
func (s *Server) datagram(conn net.PacketConn, f *feeder, p *sip.Parser, data []byte, from net.Addr, src netip.AddrPort, trusted, near bool, now time.Time) {
	if keepAlive(data) {
		return
	}
	if !trusted {
		if s.banned(src.Addr(), now) {
			s.counters.banned.Add(1)
			return
		}
		if !near && !s.srcLimit.allow(addrKey(src.Addr()), now) {
			s.edge.rateLimited.Add(1)
			return
		}
		// All strangers together get a bounded share of the loop, so a
		// flood from more addresses than the per-source limit can tell
		// apart still leaves time to read the peers' own packets (a
		// callee's 200 lost here is a lost call).
		if !near && !s.strangers.allow(0, now) {
			s.edge.rateLimited.Add(1)
			return
		}
	}
	if nulInHead(data) {
		s.counters.malformed.Add(1)
		s.log.Debug("NUL in a SIP header", "src", src, "len", len(data))
		return
	}
	msg, err := p.ParseSIP(data)
	if err != nil {
		s.counters.malformed.Add(1)
		s.log.Debug("unparsable datagram", "src", src, "len", len(data), "err", err)
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		if res := msg.(*sip.Response); res.Via() == nil || res.CSeq() == nil || res.CallID() == nil {
			s.counters.malformed.Add(1)
			return
		}
		if !f.push(data, from, src) {
			s.edge.queueFull.Add(1)
		}
		return
	}
	if !validRequest(req) {
		s.counters.malformed.Add(1)
		return
	}
	req.SetSource(src.String())
	req.SetTransport("UDP")
	sl := &statelessReply{s: s, conn: conn, req: req, src: src, inLen: len(data)}
	if !strings.EqualFold(req.SipVersion, "SIP/2.0") {
		sl.respond(505, "Version Not Supported") // RFC 3261 §21.4.5
		return
	}
	if why := badRequest(req); why != "" {
		s.counters.malformed.Add(1)
		if req.Method != sip.ACK {
			sl.respond(400, "Bad Request")
		}
		return
	}
	toTag, _ := req.To().Params.Get("tag")
	switch req.Method {
	case sip.ACK:
		if strings.HasPrefix(toTag, statelessTagPrefix) {
			s.edge.absorbed.Add(1)
			return
		}
	case sip.REGISTER, sip.INVITE:
		if toTag != "" {
			if req.Method == sip.INVITE && !s.knownDialog(req.CallID().Value(), toTag) {
				sl.respond(481, "Call/Transaction Does Not Exist")
				return
			}
			break
		}
		if s.closing() {
			sl.respond(503, "Service Unavailable", sip.NewHeader("Retry-After", retryAfter))
			return
		}
		if req.Method == sip.INVITE {
			// RFC 3261 §8.2.2 / §16.3: Max-Forwards 0 ends here; our
			// own Via in the request means it came back to us.
			if h := req.MaxForwards(); h != nil && h.Val() == 0 {
				sl.respond(483, "Too Many Hops")
				return
			}
			if s.isLoop(req) {
				sl.respond(482, "Loop Detected")
				return
			}
		}
		if _, ok := s.admit(req, src, false, sl.respond); !ok {
			return
		}
		if why := s.shedWhy(req, f); why != "" {
			s.edge.shed.Add(1)
			s.log.Warn("shedding load: new call refused with 503", "src", src, "why", why)
			sl.respond(503, "Service Unavailable", sip.NewHeader("Retry-After", retryAfter))
			return
		}
		if req.Method == sip.INVITE && taggable(req) {
			if b := withToTag(data, callTag(req)); b != nil { // see totag.go
				data = b
			}
		}
	case sip.OPTIONS:
		if toTag == "" {
			if tags := unsupportedRequire(req); len(tags) > 0 {
				sl.respond(420, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(tags, ", ")))
				return
			}
			sl.respond(200, "OK", sip.NewHeader("Accept", "application/sdp"))
			return
		}
		if !s.knownDialog(req.CallID().Value(), toTag) {
			sl.respond(481, "Call/Transaction Does Not Exist")
			return
		}
	case sip.BYE, sip.UPDATE, sip.INFO:
		if !s.knownDialog(req.CallID().Value(), toTag) {
			sl.respond(481, "Call/Transaction Does Not Exist")
			return
		}
	case sip.CANCEL:
		if !s.knownDialog(req.CallID().Value(), "") {
			sl.respond(481, "Call/Transaction Does Not Exist")
			return
		}
	default:
		sl.respond(405, "Method Not Allowed")
		return
	}
	if tags := unsupportedRequire(req); len(tags) > 0 {
		sl.respond(420, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(tags, ", ")))
		return
	}
	if !f.push(data, from, src) {
		s.edge.queueFull.Add(1)
	}
}

// knownDialog reports whether a dialog of ours has this Call-ID and, when
// tag is set, our tag tag. A dialog that ended less than Timer J ago
// counts: a retransmission of the BYE that ended it belongs to sipgo's
// server transaction, which sends the same 200 again (RFC 3261 §17.2.2);
// a stateless 481 here would overtake that 200 when it is late, and the
// caller would count a call that ended well as failed. A new request in
// such a dialog gets its 481 from handleInDialog.
func (s *Server) knownDialog(callID, tag string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tag != "" {
		k := dialogKey{callID, tag}
		return s.dialogs[k] != nil || s.ended.has(k, s.now())
	}
	for k := range s.dialogs {
		if k.callID == callID {
			return true
		}
	}
	return false
}

func (s *Server) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runCtx == nil || s.runCtx.Err() != nil
}

// shedWhy says why the box takes no new call now (a new INVITE gets 503),
// or "": sipgo's queue half full, too many requests in the handlers, or
// maxcalls reached.
func (s *Server) shedWhy(req *sip.Request, f *feeder) string {
	if req.Method != sip.INVITE {
		return ""
	}
	if f.busy() {
		return "queue"
	}
	if s.inflight.Load() >= maxInflight {
		return "handlers"
	}
	if limit := s.general().MaxCalls; limit > 0 {
		s.mu.Lock()
		n := len(s.calls)
		s.mu.Unlock()
		if n >= limit {
			return "maxcalls"
		}
	}
	return ""
}

// maxInflight bounds the request handlers running at once; past it new
// calls are refused with 503 at the entry.
const maxInflight = 512

// endedDialogs remembers the dialogs that ended, for endedFor after their
// end (see knownDialog). Guarded by Server.mu. Entries leave in the order
// they came, so the cost per dialog is constant; past maxEnded the oldest
// go early (a retransmission then gets a 481 as before).
type endedDialogs struct {
	until map[dialogKey]time.Time
	queue []endedDialog
	head  int
}

type endedDialog struct {
	key   dialogKey
	until time.Time
}

// maxEnded bounds the memory: about 2,000 calls/s ending for 32 s.
const maxEnded = 1 << 16

// endedFor is how long an ended dialog stays known: sipgo's Timer J
// (64*T1, RFC 3261 §17.2.2), as long as it keeps the server transaction
// of the request that ended the dialog; read from sipgo, which may be
// given another T1.
func endedFor() time.Duration { return sip.Timer_J }

func (e *endedDialogs) add(k dialogKey, now time.Time) {
	e.expire(now)
	if len(e.until) >= maxEnded {
		e.drop()
	}
	u := now.Add(endedFor())
	e.until[k] = u
	e.queue = append(e.queue, endedDialog{k, u})
}

func (e *endedDialogs) has(k dialogKey, now time.Time) bool {
	u, ok := e.until[k]
	return ok && now.Before(u)
}

// expire drops the entries whose time is over.
func (e *endedDialogs) expire(now time.Time) {
	for e.head < len(e.queue) && !now.Before(e.queue[e.head].until) {
		e.drop()
	}
}

// drop forgets the oldest entry; the queue's storage is reused once half
// of it has been consumed.
func (e *endedDialogs) drop() {
	if e.head >= len(e.queue) {
		return
	}
	d := e.queue[e.head]
	e.queue[e.head] = endedDialog{}
	e.head++
	if u, ok := e.until[d.key]; ok && u.Equal(d.until) {
		delete(e.until, d.key)
	}
	if e.head > len(e.queue)/2 {
		e.queue = append(e.queue[:0], e.queue[e.head:]...)
		e.head = 0
	}
}
