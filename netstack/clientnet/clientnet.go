// Package clientnet is the client side of a dial-up link for tests, the demo
// and end-to-end runs: a gVisor TCP/IP stack with the address and DNS
// servers IPCP gave, whose packets go to and come from the PPP link through
// two functions. It stands in for the Windows 95 PC.
//
// It is built on gVisor directly, the way golang.zx2c4.com/wireguard's
// tun/netstack is, but owns its goroutines so that Close is safe while
// traffic still flows (wireguard's can panic on a send to a closed channel
// then), and matches its own ping replies (wireguard's ping socket can miss
// a reply that arrives before its reader waits).
package clientnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"golang.org/x/net/dns/dnsmessage"
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
)

const nicID = 1

// Client is one client's IP stack. Safe for concurrent use.
type Client struct {
	local netip.Addr
	dns   []netip.Addr
	ns    *stack.Stack
	ep    *channel.Endpoint
	send  func([]byte)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// in queues packets from the link, so that Deliver never runs the
	// stack on the caller's goroutine: a reply produced synchronously
	// could otherwise loop back into the caller (box → client → box).
	in      chan []byte
	inDrops atomic.Uint64

	sendMu sync.Mutex // serialises calls of send

	pingMu sync.Mutex // guards seq and pings
	seq    uint16
	pings  map[uint32]chan error // outstanding echoes by id<<16|seq: nil = reply
	pingID uint16

	closeOnce sync.Once
}

// New makes a client stack with address local (IPv4) and resolvers dns.
// send is called with each IP packet the client transmits, never
// concurrently; it may keep the slice.
func New(local netip.Addr, dns []netip.Addr, mtu int, send func(pkt []byte)) (*Client, error) {
	if send == nil {
		return nil, errors.New("clientnet: nil send")
	}
	if !local.Is4() {
		return nil, fmt.Errorf("clientnet: %v: IPv4 only", local)
	}
	ns := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
		HandleLocal:        true,
	})
	c := &Client{
		local: local, dns: append([]netip.Addr(nil), dns...), ns: ns,
		ep:   channel.New(1024, uint32(mtu), ""),
		send: send, in: make(chan []byte, 1024),
		pings: map[uint32]chan error{}, pingID: uint16(rand.Uint32()),
	}
	sack := tcpip.TCPSACKEnabled(true)
	if e := ns.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		ns.Close()
		return nil, fmt.Errorf("clientnet: sack: %s", e)
	}
	if e := ns.CreateNIC(nicID, c.ep); e != nil {
		ns.Close()
		return nil, fmt.Errorf("clientnet: nic: %s", e)
	}
	if e := ns.AddProtocolAddress(nicID, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(local.As4()).WithPrefix(),
	}, stack.AddressProperties{}); e != nil {
		ns.Close()
		return nil, fmt.Errorf("clientnet: address %v: %s", local, e)
	}
	// Everything goes to the link: a PPP client's default route.
	ns.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	return c, nil
}

// readLoop carries the stack's outgoing packets to send until Close.
func (c *Client) readLoop() {
	defer c.wg.Done()
	for {
		pkt := c.ep.ReadContext(c.ctx)
		if pkt == nil {
			return
		}
		v := pkt.ToView()
		p := append([]byte(nil), v.AsSlice()...)
		v.Release()
		pkt.DecRef()
		c.sendMu.Lock()
		c.send(p)
		c.sendMu.Unlock()
	}
}

// writeLoop injects delivered packets into the stack until Close.
func (c *Client) writeLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case p := <-c.in:
			pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
			c.ep.InjectInbound(ipv4.ProtocolNumber, pkb)
			pkb.DecRef()
		}
	}
}

// Deliver hands the client one IP packet from the link; pkt is copied. It
// never blocks: when the client's queue is full the packet is lost, as on a
// congested link, and counted.
func (c *Client) Deliver(pkt []byte) {
	if len(pkt) < header.IPv4MinimumSize || pkt[0]>>4 != 4 || c.echoReply(pkt) {
		return
	}
	select {
	case c.in <- append([]byte(nil), pkt...):
	case <-c.ctx.Done():
	default:
		c.inDrops.Add(1)
	}
}

// Dropped returns how many delivered packets were lost to a full queue.
func (c *Client) Dropped() uint64 { return c.inDrops.Load() }

// Addr returns the client's address.
func (c *Client) Addr() netip.Addr { return c.local }

func (c *Client) full(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

// ListenTCP listens on the client's stack (the client as a server).
func (c *Client) ListenTCP(ap netip.AddrPort) (net.Listener, error) {
	return gonet.ListenTCP(c.ns, c.full(ap), ipv4.ProtocolNumber)
}

// ListenUDP opens a UDP socket on the client's stack.
func (c *Client) ListenUDP(ap netip.AddrPort) (net.PacketConn, error) {
	la := c.full(ap)
	return gonet.DialUDP(c.ns, &la, nil, ipv4.ProtocolNumber)
}

// DialContext dials "tcp" or "udp" (or their "4" forms) through the link;
// host names are resolved with the client's DNS servers.
func (c *Client) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "udp", "udp4":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	host, sport, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	port, err := strconv.ParseUint(sport, 10, 16)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("port %q: %w", sport, err)}
	}
	addrs, err := c.lookup(ctx, host)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var first error
	for _, a := range addrs {
		ra := c.full(netip.AddrPortFrom(a, uint16(port)))
		var conn net.Conn
		if network[0] == 't' {
			conn, err = gonet.DialContextTCP(ctx, c.ns, ra, ipv4.ProtocolNumber)
		} else {
			conn, err = gonet.DialUDP(c.ns, nil, &ra, ipv4.ProtocolNumber)
		}
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// HTTPClient returns an HTTP client whose connections go through the link.
func (c *Client) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       c.DialContext,
		DisableKeepAlives: true,
	}}
}

// LookupHost resolves host (A records) through the client's DNS servers
// only: no hosts file, as a PC on the far side of the link would.
func (c *Client) LookupHost(ctx context.Context, host string) ([]string, error) {
	as, err := c.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out, nil
}

func (c *Client) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	name, err := dnsmessage.NewName(host + ".")
	if err != nil || host == "" {
		return nil, &net.DNSError{Err: "invalid name", Name: host, IsNotFound: true}
	}
	if len(c.dns) == 0 {
		return nil, &net.DNSError{Err: "no DNS servers", Name: host}
	}
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		for _, srv := range c.dns {
			as, err := c.query(ctx, srv, name)
			if err == nil {
				return as, nil
			}
			last = err
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound || ctx.Err() != nil {
				return nil, err
			}
		}
	}
	return nil, last
}

// query asks one server for name's A records over UDP, and over TCP when
// the answer is truncated (RFC 1035 §4.2).
func (c *Client) query(ctx context.Context, srv netip.Addr, name dnsmessage.Name) ([]netip.Addr, error) {
	id := uint16(rand.Uint32())
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, err := b.Finish()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	dl, _ := ctx.Deadline()
	ra := c.full(netip.AddrPortFrom(srv, 53))
	uc, err := gonet.DialUDP(c.ns, nil, &ra, ipv4.ProtocolNumber)
	if err != nil {
		return nil, err
	}
	defer uc.Close()
	_ = uc.SetDeadline(dl)
	if _, err := uc.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := uc.Read(buf)
		if err != nil {
			return nil, &net.DNSError{Err: err.Error(), Name: name.String(), Server: srv.String(), IsTimeout: true}
		}
		if n < 12 || binary.BigEndian.Uint16(buf) != id {
			continue
		}
		if buf[2]&0x02 == 0 { // TC clear
			return parseA(buf[:n], name, srv)
		}
		break
	}
	tc, err := gonet.DialContextTCP(ctx, c.ns, ra, ipv4.ProtocolNumber)
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	_ = tc.SetDeadline(dl)
	if _, err := tc.Write(append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)); err != nil {
		return nil, err
	}
	var lb [2]byte
	if _, err := readFull(tc, lb[:]); err != nil {
		return nil, err
	}
	resp := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := readFull(tc, resp); err != nil {
		return nil, err
	}
	return parseA(resp, name, srv)
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func parseA(resp []byte, name dnsmessage.Name, srv netip.Addr) ([]netip.Addr, error) {
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		return nil, &net.DNSError{Err: "cannot unmarshal DNS message", Name: name.String(), Server: srv.String()}
	}
	switch m.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return nil, &net.DNSError{Err: "no such host", Name: name.String(), Server: srv.String(), IsNotFound: true}
	default:
		return nil, &net.DNSError{Err: "server misbehaving: " + m.RCode.String(), Name: name.String(), Server: srv.String(), IsTemporary: true}
	}
	var out []netip.Addr
	for _, a := range m.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			out = append(out, netip.AddrFrom4(r.A))
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: name.String(), Server: srv.String(), IsNotFound: true}
	}
	return out, nil
}

// Ping sends one ICMP echo request (RFC 792) to addr and waits for the
// reply; it returns the round-trip time. The echo is built and matched here,
// beside the stack, so no reply can be missed.
func (c *Client) Ping(ctx context.Context, addr netip.Addr) (time.Duration, error) {
	if !addr.Is4() {
		return 0, fmt.Errorf("clientnet: ping %v: IPv4 only", addr)
	}
	c.pingMu.Lock()
	c.seq++
	seq := c.seq
	key := uint32(c.pingID)<<16 | uint32(seq)
	got := make(chan error, 1)
	c.pings[key] = got
	c.pingMu.Unlock()
	defer func() {
		c.pingMu.Lock()
		delete(c.pings, key)
		c.pingMu.Unlock()
	}()
	const hdr = header.IPv4MinimumSize
	pkt := make([]byte, hdr+header.ICMPv4MinimumSize+32)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), ID: seq, TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(c.local.As4()), DstAddr: tcpip.AddrFrom4(addr.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	m := header.ICMPv4(pkt[hdr:])
	m.SetType(header.ICMPv4Echo)
	m.SetIdent(c.pingID)
	m.SetSequence(seq)
	copy(m.Payload(), "isp-box clientnet ping payload!!")
	m.SetChecksum(0)
	m.SetChecksum(^checksum.Checksum(m, 0))

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	c.sendMu.Lock()
	c.send(pkt)
	c.sendMu.Unlock()
	select {
	case err := <-got:
		if err != nil {
			return 0, fmt.Errorf("clientnet: ping %v: %w", addr, err)
		}
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("clientnet: ping %v: %w", addr, ctx.Err())
	case <-c.ctx.Done():
		return 0, fmt.Errorf("clientnet: ping %v: closed", addr)
	}
}

// UnreachableError is a Destination Unreachable (RFC 792) answering a ping.
type UnreachableError struct {
	From netip.Addr
	Code uint8 // 13: communication administratively prohibited (RFC 1812 §5.2.7.1)
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("destination unreachable (code %d) from %v", e.Code, e.From)
}

// echoReply reports whether pkt is the reply to one of our pings, or a
// Destination Unreachable quoting one (RFC 792: the original IP header and
// its first 8 data bytes), and wakes that ping.
func (c *Client) echoReply(pkt []byte) bool {
	if pkt[9] != uint8(header.ICMPv4ProtocolNumber) {
		return false
	}
	ihl := int(pkt[0]&0xf) * 4
	if len(pkt) < ihl+header.ICMPv4MinimumSize {
		return false
	}
	m := header.ICMPv4(pkt[ihl:])
	var (
		key uint32
		res error
	)
	switch m.Type() {
	case header.ICMPv4EchoReply:
		key = uint32(m.Ident())<<16 | uint32(m.Sequence())
	case header.ICMPv4DstUnreachable:
		in := []byte(m)[header.ICMPv4MinimumSize:]
		if len(in) < header.IPv4MinimumSize || in[9] != uint8(header.ICMPv4ProtocolNumber) {
			return false
		}
		iihl := int(in[0]&0xf) * 4
		if len(in) < iihl+header.ICMPv4MinimumSize || header.ICMPv4(in[iihl:]).Type() != header.ICMPv4Echo {
			return false
		}
		e := header.ICMPv4(in[iihl:])
		key = uint32(e.Ident())<<16 | uint32(e.Sequence())
		res = &UnreachableError{From: netip.AddrFrom4([4]byte(pkt[12:16])), Code: uint8(m.Code())}
	default:
		return false
	}
	c.pingMu.Lock()
	ch, ok := c.pings[key]
	c.pingMu.Unlock()
	if ok {
		select {
		case ch <- res:
		default:
		}
	}
	return ok
}

// Close stops the client: its goroutines first, so nothing is handed to
// send after Close returns, then the stack.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		c.ns.RemoveNIC(nicID)
		c.ns.Close()
		c.ns.Wait()
		c.ep.Close()
	})
	return nil
}

// Pair returns two clients wired back to back, as the two ends of a
// point-to-point link: what one sends the other receives.
func Pair(a, b netip.Addr, mtu int) (*Client, *Client, error) {
	var (
		mu     sync.Mutex
		ca, cb *Client
	)
	to := func(peer **Client) func([]byte) {
		return func(p []byte) {
			mu.Lock()
			c := *peer
			mu.Unlock()
			if c != nil {
				c.Deliver(p)
			}
		}
	}
	x, err := New(a, nil, mtu, to(&cb))
	if err != nil {
		return nil, nil, err
	}
	y, err := New(b, nil, mtu, to(&ca))
	if err != nil {
		x.Close()
		return nil, nil, err
	}
	mu.Lock()
	ca, cb = x, y
	mu.Unlock()
	return x, y, nil
}
