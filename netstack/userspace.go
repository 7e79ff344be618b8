package netstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/isp-box/isp-box/netstack/dnsfwd"
)

const (
	nicID = 1
	// dialTimeout bounds the host-side connect of a forwarded TCP connection;
	// the client sees a RST when it expires, as for a refused connection.
	dialTimeout = 15 * time.Second
	// maxPending is how many half-open forwarded TCP connections may wait
	// for the host-side connect at once (gVisor's maxInFlight).
	maxPending = 1024
)

// userspace terminates every client's connections in one gVisor stack and
// opens the matching host sockets (NAT by proxy). The NIC is promiscuous and
// may spoof, so the stack accepts packets for any destination and answers
// from it: the client believes it talks to the world.
type userspace struct {
	st     *Stack
	ns     *stack.Stack
	ep     *channel.Endpoint
	gw     netip.Addr
	notify *channel.NotificationHandle
	dns    *dnsfwd.Forwarder

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex               // guards conns and closing; held around wg.Add
	conns   map[io.Closer]netip.Addr // forwarded connections by client address
	closing bool
	wg      sync.WaitGroup

	flows  map[netip.Addr]int // guarded by mu: forwarded flows per client
	nflows int                // guarded by mu: their sum
	limLog rateLog

	pingSem chan struct{} // bounds ICMP echoes in flight to the world
	icmp    ICMPPath      // how echoes reach the world, found at start
}

func newUserspace(ctx context.Context, st *Stack) (*userspace, error) {
	cfg := st.cfg
	ns := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	u := &userspace{
		st: st, ns: ns, gw: cfg.Gateway,
		ep:      channel.New(512, uint32(cfg.MTU), ""),
		conns:   map[io.Closer]netip.Addr{},
		flows:   map[netip.Addr]int{},
		pingSem: make(chan struct{}, 64),
	}
	u.ctx, u.cancel = context.WithCancel(context.WithoutCancel(ctx))
	fail := func(what string, e tcpip.Error) (*userspace, error) {
		u.cancel()
		ns.Close()
		return nil, fmt.Errorf("netstack: userspace: %s: %s", what, e)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if e := ns.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return fail("sack", e)
	}
	// Room for a fast uplink; the PPP side is slow but the benchmark and a
	// LAN client are not.
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: 256 << 10, Max: 4 << 20}
	if e := ns.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); e != nil {
		return fail("receive buffer", e)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: 256 << 10, Max: 4 << 20}
	if e := ns.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); e != nil {
		return fail("send buffer", e)
	}
	if e := ns.CreateNIC(nicID, u.ep); e != nil {
		return fail("create nic", e)
	}
	if e := ns.AddProtocolAddress(nicID, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(cfg.Gateway.As4()).WithPrefix(),
	}, stack.AddressProperties{}); e != nil {
		return fail("gateway address", e)
	}
	ns.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	if e := ns.SetPromiscuousMode(nicID, true); e != nil {
		return fail("promiscuous", e)
	}
	if e := ns.SetSpoofing(nicID, true); e != nil {
		return fail("spoofing", e)
	}
	tf := tcp.NewForwarder(ns, 0, maxPending, u.forwardTCP)
	ns.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(ns, u.forwardUDP)
	ns.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
	u.notify = u.ep.AddNotify(u)

	// The DNS forwarder on gateway:53. Bound endpoints win over the
	// forwarders above, so these see every query to the gateway.
	u.dns = dnsfwd.New(dnsfwd.Config{Upstream: cfg.DNSUpstream, HostsFile: cfg.HostsFile, Log: st.log})
	gw53 := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(cfg.Gateway.As4()), Port: 53}
	pc, err := gonet.DialUDP(ns, &gw53, nil, ipv4.ProtocolNumber)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("netstack: userspace: dns udp listener: %w", err)
	}
	l, err := gonet.ListenTCP(ns, gw53, ipv4.ProtocolNumber)
	if err != nil {
		pc.Close()
		u.close()
		return nil, fmt.Errorf("netstack: userspace: dns tcp listener: %w", err)
	}
	u.spawn(func() { _ = u.dns.ServeUDP(u.ctx, pc) })
	u.spawn(func() { _ = u.dns.ServeTCP(u.ctx, l) })
	u.icmp = probeICMP()
	st.log.Info("icmp echo to the world", "path", string(u.icmp))
	if u.icmp == ICMPNone {
		st.log.Warn(icmpHint())
	}
	st.log.Info("dns forwarder", "listen", cfg.Gateway.String()+":53", "upstream", u.dns.Upstream(), "hosts", cfg.HostsFile)
	return u, nil
}

// spawn runs fn in a goroutine that close waits for; false if closing.
func (u *userspace) spawn(fn func()) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closing {
		return false
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		fn()
	}()
	return true
}

// track registers a client's connections, which close and the client's
// detach shut; false if closing or the client is gone. Session.Close marks
// the session closed before detach takes u.mu, so a connection is either
// seen by detach or refused here, never missed.
func (u *userspace) track(client netip.Addr, cs ...io.Closer) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closing {
		return false
	}
	if s := u.st.lookup(client); s == nil || s.closed.Load() {
		return false
	}
	for _, c := range cs {
		u.conns[c] = client
	}
	return true
}

func (u *userspace) untrack(cs ...io.Closer) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range cs {
		delete(u.conns, c)
	}
}

func (u *userspace) attach(*Session) error { return nil }

// detach closes the host sides of the session's forwarded connections, so
// that servers see the end of the client at once (a hung-up modem sends no
// FIN). The gVisor sides close with them.
func (u *userspace) detach(s *Session) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for c, a := range u.conns {
		if a == s.remote {
			c.Close()
			delete(u.conns, c)
		}
	}
}

// WriteNotify is called by the channel endpoint when gVisor has written a
// packet: route it to the session that owns its destination.
func (u *userspace) WriteNotify() {
	for {
		pkt := u.ep.Read()
		if pkt == nil {
			return
		}
		u.out(pkt)
	}
}

func (u *userspace) out(pkt *stack.PacketBuffer) {
	defer pkt.DecRef()
	v := pkt.ToView()
	defer v.Release()
	b := v.AsSlice()
	if len(b) < ipv4HeaderLen || b[0]>>4 != 4 {
		return
	}
	if s := u.st.lookup(netip.AddrFrom4([4]byte(b[16:20]))); s != nil {
		s.output(b)
	}
}

// send routes a client's packet: to another client directly (the box is
// their router), to the gVisor stack for the gateway and the world, or to a
// ping socket for ICMP echo to the world.
func (u *userspace) send(s *Session, pkt []byte) {
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	proto := pkt[9]
	ihl := int(pkt[0]&0xf) * 4
	if dst != u.gw {
		if other := u.st.lookup(dst); other != nil {
			u.switchTo(s, other, pkt)
			return
		}
		if reason := u.st.policy(dst); reason != "" {
			s.drop(reason)
			if reason == ReasonForbidden && proto == uint8(header.TCPProtocolNumber) {
				// Rejected like a firewall's "reject with tcp reset": the
				// forwarder refuses the SYN with a RST, so the client fails
				// at once instead of after its connect timeout.
				u.inject(pkt)
			}
			return
		}
		if proto == uint8(header.ICMPv4ProtocolNumber) {
			if header.IPv4(pkt).More() || header.IPv4(pkt).FragmentOffset() != 0 {
				// A fragmented echo would be reassembled and answered by
				// gVisor itself, in the name of a host it never reached.
				s.drop(ReasonNoRoute)
				return
			}
			if len(pkt) >= ihl+header.ICMPv4MinimumSize && header.ICMPv4(pkt[ihl:]).Type() == header.ICMPv4Echo {
				u.echo(s, dst, pkt, ihl)
				return
			}
		}
	}
	u.inject(pkt)
}

// inject hands a packet to the gVisor stack; pkt is copied.
func (u *userspace) inject(pkt []byte) {
	pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	u.ep.InjectInbound(ipv4.ProtocolNumber, pkb)
	pkb.DecRef()
}

// switchTo forwards a packet from one client to another as a router does:
// TTL decremented (RFC 1812 §5.3.1), header checksum updated.
func (u *userspace) switchTo(from, to *Session, pkt []byte) {
	if pkt[8] <= 1 {
		from.drop(ReasonTTL)
		return
	}
	cp := append([]byte(nil), pkt...)
	ip := header.IPv4(cp)
	ip.SetTTL(ip.TTL() - 1)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	to.output(cp)
}

// policy says why a client may not reach dst (not the gateway), or "".
func (s *Stack) policy(dst netip.Addr) string {
	switch {
	case dst.IsLoopback() || dst.IsUnspecified() || dst.IsMulticast() ||
		dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || dst.As4()[0] >= 240:
		// RFC 1122 §3.2.1.3 / RFC 1812 §5.3.7: never forwarded.
		return ReasonNoRoute
	case s.cfg.Pool.Contains(dst):
		return ReasonNoRoute // a client address nobody holds, or the pool's broadcast
	case s.allowed(dst):
		return ""
	case s.cfg.BlockPrivate && (dst.IsPrivate() || dst.IsLinkLocalUnicast() || cgnat.Contains(dst)):
		return ReasonForbidden
	case s.cfg.BlockHost && s.host.has(dst):
		// The host's own address: every service it keeps on 0.0.0.0.
		return ReasonForbidden
	}
	return ""
}

// allowNets are the destinations exempt from BlockPrivate and BlockHost:
// Allow, and the DNS servers the clients are told to use.
func (s *Stack) allowNets() []netip.Prefix {
	out := append([]netip.Prefix(nil), s.cfg.Allow...)
	dns := s.cfg.DNS
	if len(dns) == 0 {
		dns = s.defaultDNS
	}
	for _, a := range dns {
		if a.Is4() {
			out = append(out, netip.PrefixFrom(a, 32))
		}
	}
	return out
}

func (s *Stack) allowed(dst netip.Addr) bool {
	for _, p := range s.allowNets() {
		if p.Contains(dst) {
			return true
		}
	}
	return false
}

// hostAddrs caches the host's own addresses, which change with DHCP and
// interfaces coming and going; a dump per new flow would cost more.
type hostAddrs struct {
	mu  sync.Mutex
	at  time.Time
	set map[netip.Addr]bool
}

func (h *hostAddrs) has(a netip.Addr) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.set == nil || time.Since(h.at) > 5*time.Second {
		h.at = time.Now()
		h.set = map[netip.Addr]bool{}
		addrs, _ := net.InterfaceAddrs()
		for _, x := range addrs {
			if p, err := netip.ParsePrefix(x.String()); err == nil {
				h.set[p.Addr().Unmap()] = true
			}
		}
	}
	return h.set[a]
}

// rateLog lets one line per key through every rateLogEvery and says how
// many it held back, so that a client hammering a limit cannot flood the
// log.
type rateLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

const rateLogEvery = 10 * time.Second

// allow reports whether to log now, and how many were held back before.
func (r *rateLog) allow(key string) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.held = map[string]time.Time{}, map[string]int{}
	}
	if time.Since(r.last[key]) < rateLogEvery {
		r.held[key]++
		return false, 0
	}
	n := r.held[key]
	r.last[key], r.held[key] = time.Now(), 0
	return true, n
}

// acquireFlow counts a new forwarded flow for client against the session's
// and the box's limits; false (counted, logged at a bounded rate) when one
// is reached. Each granted flow is given back with releaseFlow.
func (u *userspace) acquireFlow(client netip.Addr) bool {
	cfg := &u.st.cfg
	u.mu.Lock()
	var which string
	switch {
	case u.closing:
		u.mu.Unlock()
		return false
	case u.flows[client] >= cfg.MaxSessionFlows:
		which = "session"
	case u.nflows >= cfg.MaxFlows:
		which = "box"
	default:
		u.flows[client]++
		u.nflows++
		u.mu.Unlock()
		return true
	}
	n, total := u.flows[client], u.nflows
	u.mu.Unlock()
	s := u.st.lookup(client)
	if s == nil {
		return false
	}
	s.drop(ReasonFlowLimit)
	if ok, held := u.limLog.allow(which + s.name); ok {
		u.st.log.Warn("flow limit reached: new connection refused", "limit", which, "session", s.name, "remote", client,
			"session_flows", n, "max_session_flows", cfg.MaxSessionFlows, "box_flows", total, "max_flows", cfg.MaxFlows,
			"refused_since_last_line", held)
	}
	return false
}

func (u *userspace) releaseFlow(client netip.Addr) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.flows[client]--; u.flows[client] <= 0 {
		delete(u.flows, client)
	}
	u.nflows--
}

// Flows returns the forwarded flows of a client and of the box.
func (u *userspace) flowCount(client netip.Addr) (int, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.flows[client], u.nflows
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598 shared address space

// target maps a destination the gVisor stack accepted to the host address
// to dial: the gateway means host loopback when HostLoopback is set.
func (u *userspace) target(a tcpip.Address) (netip.Addr, bool) {
	dst := netip.AddrFrom4(a.As4())
	if dst == u.gw {
		if u.st.cfg.HostLoopback {
			return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
		}
		return netip.Addr{}, false
	}
	return dst, u.st.policy(dst) == ""
}

// forwardTCP runs in a goroutine of gVisor's for each SYN with no listener:
// connect to the real destination first, and only then complete the
// client's handshake, so a refused or unreachable destination gives the
// client a RST as it would without the box.
func (u *userspace) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst, ok := u.target(id.LocalAddress)
	if !ok || u.ctx.Err() != nil {
		r.Complete(true)
		return
	}
	client := netip.AddrFrom4(id.RemoteAddress.As4())
	if !u.acquireFlow(client) {
		r.Complete(true) // RST: the client fails at once instead of retrying its SYN
		return
	}
	granted := true
	defer func() {
		if granted {
			u.releaseFlow(client)
		}
	}()
	ctx, cancel := context.WithTimeout(u.ctx, dialTimeout)
	var d net.Dialer
	out, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, id.LocalPort).String())
	cancel()
	if err != nil {
		u.st.log.Debug("tcp forward dial failed", "dst", netip.AddrPortFrom(dst, id.LocalPort), "err", err)
		r.Complete(true)
		return
	}
	// Tracked from here on, so that a session closing while the client's
	// handshake is still in flight (its last ACK may never come) closes the
	// server's side at once.
	if !u.track(client, out) {
		out.Close()
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		u.untrack(out)
		out.Close()
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	in := gonet.NewTCPConn(&wq, ep)
	idle := u.st.cfg.TCPTimeout
	if !u.track(client, in) || !u.spawn(func() {
		defer u.releaseFlow(client)
		defer u.untrack(in, out)
		splice(in, out, idle)
	}) {
		u.untrack(in, out)
		in.Close()
		out.Close()
		return
	}
	granted = false // the splice gives it back
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways; when one side ends its stream the other gets a
// FIN (half-close), and both are closed when both directions are done or
// neither has carried data for idle (a vanished peer behind a NAT never
// sends the FIN that would free the flow).
func splice(a, b net.Conn, idle time.Duration) {
	var (
		wg   sync.WaitGroup
		last atomic.Int64
	)
	last.Store(time.Now().UnixNano())
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, idleReader{src, &last, idle})
		if cw, ok := dst.(closeWriter); ok && err == nil {
			_ = cw.CloseWrite()
		} else {
			// An error (reset, close) ends both directions.
			a.Close()
			b.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// idleReader reads from a connection until no data has passed either way
// (last, shared by both directions) for idle.
type idleReader struct {
	c    net.Conn
	last *atomic.Int64
	idle time.Duration
}

func (r idleReader) Read(b []byte) (int, error) {
	for {
		_ = r.c.SetReadDeadline(time.Unix(0, r.last.Load()).Add(r.idle))
		n, err := r.c.Read(b)
		if n > 0 {
			r.last.Store(time.Now().UnixNano())
			return n, nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, r.last.Load())) < r.idle {
			continue // the other direction kept the connection alive
		}
		return n, err
	}
}

// forwardUDP is called synchronously by gVisor for the first datagram of a
// flow (client addr:port → destination addr:port): it makes a connected
// endpoint for the flow, which takes that datagram and the following ones,
// and relays them through a host UDP socket until the flow is idle.
func (u *userspace) forwardUDP(r *udp.ForwarderRequest) {
	id := r.ID()
	dst, ok := u.target(id.LocalAddress)
	if !ok || u.ctx.Err() != nil {
		return
	}
	client := netip.AddrFrom4(id.RemoteAddress.As4())
	if !u.acquireFlow(client) {
		return // the datagram is dropped; the client's retries are too, until a flow ends
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		u.releaseFlow(client)
		return
	}
	in := gonet.NewUDPConn(&wq, ep)
	if !u.spawn(func() {
		defer u.releaseFlow(client)
		out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, id.LocalPort)))
		if err != nil {
			in.Close()
			return
		}
		if !u.track(netip.AddrFrom4(id.RemoteAddress.As4()), in, out) {
			in.Close()
			out.Close()
			return
		}
		defer u.untrack(in, out)
		relayUDP(in, ep, &wq, out, u.st.cfg.UDPTimeout)
	}) {
		u.releaseFlow(client)
		in.Close()
	}
}

// udpBufs holds the relays' datagram buffers. A relay takes one only while
// a datagram is being copied, so an idle flow holds none: with a buffer per
// direction and flow, 128 KB a flow, the flow limits would cost a Pi's
// memory.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}

// relayUDP copies datagrams between a client's flow (the gVisor endpoint ep,
// written through in) and the host socket out until neither way has seen
// one for idle, or either side fails or is closed.
func relayUDP(in *gonet.UDPConn, ep tcpip.Endpoint, wq *waiter.Queue, out *net.UDPConn, idle time.Duration) {
	var (
		last atomic.Int64
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	last.Store(time.Now().UnixNano())
	active := func() bool { return time.Since(time.Unix(0, last.Load())) < idle }
	stop := sync.OnceFunc(func() {
		close(done)
		in.Close()
		out.Close()
	})
	wg.Add(2)
	go func() { // client → world
		defer wg.Done()
		defer stop()
		we, ch := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
		wq.EventRegister(&we)
		defer wq.EventUnregister(&we)
		t := time.NewTimer(idle)
		defer t.Stop()
		for {
			bp := udpBufs.Get().(*[]byte)
			w := tcpip.SliceWriter(*bp)
			res, terr := ep.Read(&w, tcpip.ReadOptions{})
			if _, wait := terr.(*tcpip.ErrWouldBlock); wait {
				udpBufs.Put(bp)
				t.Reset(time.Until(time.Unix(0, last.Load()).Add(idle)))
				select {
				case <-ch:
				case <-done:
					return
				case <-t.C:
					if !active() {
						return
					}
				}
				continue
			}
			if terr != nil {
				udpBufs.Put(bp)
				return
			}
			last.Store(time.Now().UnixNano())
			_, err := out.Write((*bp)[:res.Count])
			udpBufs.Put(bp)
			if err != nil {
				return
			}
		}
	}()
	go func() { // world → client
		defer wg.Done()
		defer stop()
		rc, err := out.SyscallConn()
		if err != nil {
			return
		}
		for {
			_ = out.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
			var (
				bp   *[]byte
				n    int
				rerr error
			)
			// The buffer is taken once the socket is readable.
			err := rc.Read(func(fd uintptr) bool {
				bp = udpBufs.Get().(*[]byte)
				n, _, rerr = unix.Recvfrom(int(fd), *bp, 0)
				if rerr == unix.EAGAIN || rerr == unix.EINTR {
					udpBufs.Put(bp)
					bp = nil
					return false
				}
				return true
			})
			if err == nil && rerr != nil {
				err = rerr
			}
			if err != nil {
				if bp != nil {
					udpBufs.Put(bp)
				}
				if errors.Is(err, os.ErrDeadlineExceeded) && active() {
					continue // the other direction kept the flow alive
				}
				return
			}
			last.Store(time.Now().UnixNano())
			_, err = in.Write((*bp)[:n])
			udpBufs.Put(bp)
			if err != nil {
				return
			}
		}
	}()
	wg.Wait()
}

func (u *userspace) close() error {
	u.cancel()
	u.mu.Lock()
	u.closing = true
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
	if u.notify != nil {
		u.ep.RemoveNotify(u.notify)
	}
	u.ns.RemoveNIC(nicID)
	u.ns.Close()
	u.ns.Wait()
	u.ep.Close()
	return nil
}
