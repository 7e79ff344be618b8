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
	seqMu   sync.Mutex // guards seq
	seq     uint16
	inDrops atomicCounter
}

// New makes a client stack with address local and resolvers dns. send is
// called, from one goroutine, with each IP packet the client transmits; it
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
		in: make(chan []byte, 1024), stop: make(chan struct{})}
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
			c.send(append([]byte(nil), bufs[i][:sizes[i]]...))
		}
	}
}

// Deliver hands the client one IP packet from the link; pkt is copied. It
// never blocks: when the client's queue is full the packet is lost, as on a
// congested link, and counted.
func (c *Client) Deliver(pkt []byte) {
	if len(pkt) == 0 {
		return
	}
	select {
	case c.in <- append([]byte(nil), pkt...):
	case <-c.stop:
	default:
		c.inDrops.add()
	}
}

// Dropped returns how many delivered packets were lost to a full queue.
func (c *Client) Dropped() uint64 { return c.inDrops.load() }

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
// reply; it returns the round-trip time.
func (c *Client) Ping(ctx context.Context, addr netip.Addr) (time.Duration, error) {
	pc, err := c.net.DialPingAddr(c.local, addr)
	if err != nil {
		return 0, fmt.Errorf("clientnet: ping %v: %w", addr, err)
	}
	defer pc.Close()
	c.seqMu.Lock()
	c.seq++
	seq := c.seq
	c.seqMu.Unlock()
	// type 8, code 0, checksum, identifier (set by the stack), sequence, data
	msg := make([]byte, 8+32)
	msg[0] = 8
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], "isp-box clientnet ping payload!!")
	binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
	dl := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = pc.SetReadDeadline(dl)
	start := time.Now()
	if _, err := pc.Write(msg); err != nil {
		return 0, fmt.Errorf("clientnet: ping %v: %w", addr, err)
	}
	buf := make([]byte, 1500)
	for {
		n, err := pc.Read(buf)
		if err != nil {
			return 0, fmt.Errorf("clientnet: ping %v: %w", addr, err)
		}
		if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[6:]) == seq {
			return time.Since(start), nil
		}
	}
}

type atomicCounter struct{ v atomic.Uint64 }

func (a *atomicCounter) add()         { a.v.Add(1) }
func (a *atomicCounter) load() uint64 { return a.v.Load() }

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
