// Package clientnet is the client side of a dial-up link for tests, the demo
// and end-to-end runs: a gVisor TCP/IP stack (wireguard's tun/netstack) with
// the address and DNS servers IPCP gave, whose packets go to and come from
// the PPP link through two functions. It stands in for the Windows 95 PC.
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
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

// Client is one client's IP stack. Safe for concurrent use.
type Client struct {
	local netip.Addr
	dev   tun.Device
	net   *netstack.Net
	send  func([]byte)

	// in queues packets from the link, so that Deliver never runs the
	// stack on the caller's goroutine: a reply produced synchronously
	// could otherwise loop back into the caller (box → client → box).
	in      chan []byte
	stop    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Mutex // guards closed
	closed  bool
	seqMu   sync.Mutex // guards seq and pings
	seq     uint16
	pings   map[uint32]chan struct{} // outstanding echoes by id<<16|seq
	pingID  uint16
	sendMu  sync.Mutex // serialises calls of send
	inDrops atomic.Uint64
}

// New makes a client stack with address local and resolvers dns. send is
// called with each IP packet the client transmits, never concurrently; it
// may keep the slice.
func New(local netip.Addr, dns []netip.Addr, mtu int, send func(pkt []byte)) (*Client, error) {
	if send == nil {
		return nil, errors.New("clientnet: nil send")
	}
	dev, tnet, err := netstack.CreateNetTUN([]netip.Addr{local}, dns, mtu)
	if err != nil {
		return nil, fmt.Errorf("clientnet: %w", err)
	}
	c := &Client{local: local, dev: dev, net: tnet, send: send,
		in: make(chan []byte, 1024), stop: make(chan struct{}),
		pings: map[uint32]chan struct{}{}, pingID: uint16(rand.Uint32())}
	c.wg.Add(2)
	go c.readLoop(mtu)
	go c.writeLoop()
	return c, nil
}

// writeLoop injects delivered packets into the stack until Close.
func (c *Client) writeLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case pkt := <-c.in:
			_, _ = c.dev.Write([][]byte{pkt}, 0)
		}
	}
}

// readLoop carries the stack's outgoing packets to send until Close.
func (c *Client) readLoop(mtu int) {
	defer c.wg.Done()
	bufs := [][]byte{make([]byte, mtu+64)}
	sizes := make([]int, 1)
	for {
		n, err := c.dev.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		for i := 0; i < n; i++ {
			p := append([]byte(nil), bufs[i][:sizes[i]]...)
			c.sendMu.Lock()
			c.send(p)
			c.sendMu.Unlock()
		}
	}
}

// Deliver hands the client one IP packet from the link; pkt is copied. It
// never blocks: when the client's queue is full the packet is lost, as on a
// congested link, and counted.
func (c *Client) Deliver(pkt []byte) {
	if len(pkt) == 0 || c.echoReply(pkt) {
		return
	}
	select {
	case c.in <- append([]byte(nil), pkt...):
	case <-c.stop:
	default:
		c.inDrops.Add(1)
	}
}

// Dropped returns how many delivered packets were lost to a full queue.
func (c *Client) Dropped() uint64 { return c.inDrops.Load() }

// Addr returns the client's address.
func (c *Client) Addr() netip.Addr { return c.local }

// Net returns the underlying wireguard netstack (Listen*, Dial*, Lookup*).
func (c *Client) Net() *netstack.Net { return c.net }

// DialContext dials "tcp", "udp" or "ping" through the client stack,
// resolving names with the client's DNS servers.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.net.DialContext(ctx, network, addr)
}

// LookupHost resolves host through the client's DNS servers.
func (c *Client) LookupHost(ctx context.Context, host string) ([]string, error) {
	return c.net.LookupContextHost(ctx, host)
}

// HTTPClient returns an HTTP client whose connections go through the link.
func (c *Client) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       c.DialContext,
		DisableKeepAlives: true,
	}}
}

// Ping sends one ICMP echo request (RFC 792) to addr and waits for the
// reply; it returns the round-trip time. The echo is built and matched here,
// beside the stack: wireguard's ping socket can miss a reply that arrives
// before its reader waits, which a fast box makes likely.
func (c *Client) Ping(ctx context.Context, addr netip.Addr) (time.Duration, error) {
	if !addr.Is4() {
		return 0, fmt.Errorf("clientnet: ping %v: IPv4 only", addr)
	}
	c.seqMu.Lock()
	c.seq++
	seq := c.seq
	key := uint32(c.pingID)<<16 | uint32(seq)
	got := make(chan struct{}, 1)
	c.pings[key] = got
	c.seqMu.Unlock()
	defer func() {
		c.seqMu.Lock()
		delete(c.pings, key)
		c.seqMu.Unlock()
	}()
	const hdr = 20
	pkt := make([]byte, hdr+8+32)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], seq) // IP identification
	pkt[8], pkt[9] = 64, 1                   // TTL, protocol ICMP
	src, dst := c.local.As4(), addr.As4()
	copy(pkt[12:16], src[:])
	copy(pkt[16:20], dst[:])
	binary.BigEndian.PutUint16(pkt[10:], icmpChecksum(pkt[:hdr]))
	m := pkt[hdr:]
	m[0] = 8 // echo request, code 0
	binary.BigEndian.PutUint16(m[4:], c.pingID)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], "isp-box clientnet ping payload!!")
	binary.BigEndian.PutUint16(m[2:], icmpChecksum(m))

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	c.sendMu.Lock()
	c.send(pkt)
	c.sendMu.Unlock()
	select {
	case <-got:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("clientnet: ping %v: %w", addr, ctx.Err())
	case <-c.stop:
		return 0, fmt.Errorf("clientnet: ping %v: closed", addr)
	}
}

// echoReply reports whether pkt is the reply to one of our pings, and
// wakes that ping.
func (c *Client) echoReply(pkt []byte) bool {
	if len(pkt) < 28 || pkt[0]>>4 != 4 || pkt[9] != 1 {
		return false
	}
	ihl := int(pkt[0]&0xf) * 4
	if len(pkt) < ihl+8 || pkt[ihl] != 0 {
		return false
	}
	key := uint32(binary.BigEndian.Uint16(pkt[ihl+4:]))<<16 | uint32(binary.BigEndian.Uint16(pkt[ihl+6:]))
	c.seqMu.Lock()
	ch, ok := c.pings[key]
	c.seqMu.Unlock()
	if ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return ok
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Close stops the stack.
func (c *Client) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.stop)
	err := c.dev.Close()
	c.wg.Wait()
	return err
}
