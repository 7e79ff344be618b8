// Package ppptest has fakes for testing PPP sessions without a modem or an
// IP stack: a Network with an address pool that records the packets
// sessions send and lets a test inject packets toward a client, and an
// in-memory line that can lose and reorder writes.
package ppptest

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/isp-box/isp-box/ppp"
)

// Network is a fake ppp.Network. Safe for concurrent use.
type Network struct {
	LocalAddr netip.Addr
	DNSAddrs  []netip.Addr

	mu    sync.Mutex
	pool  []netip.Addr     // guarded by mu
	links map[string]*Link // guarded by mu
	att   chan *Link
}

var (
	_ ppp.Network   = (*Network)(nil)
	_ ppp.MTUSetter = (*Link)(nil)
)

// NewNetwork returns a network whose gateway is local and whose pool holds
// the given client addresses.
func NewNetwork(local string, pool ...string) *Network {
	n := &Network{LocalAddr: netip.MustParseAddr(local), links: map[string]*Link{}, att: make(chan *Link, 16)}
	for _, p := range pool {
		n.pool = append(n.pool, netip.MustParseAddr(p))
	}
	return n
}

// ErrPoolEmpty is returned when no address is left.
var ErrPoolEmpty = errors.New("ppptest: address pool empty")

// Attach implements ppp.Network.
func (n *Network) Attach(_ context.Context, session string, want netip.Addr, deliver func([]byte)) (ppp.NetLink, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var addr netip.Addr
	for i, a := range n.pool {
		if !want.IsValid() || a == want {
			addr = a
			n.pool = append(n.pool[:i:i], n.pool[i+1:]...)
			break
		}
	}
	if !addr.IsValid() {
		if !want.IsValid() {
			return nil, ErrPoolEmpty
		}
		addr = want // a static address outside the pool
	}
	l := &Link{n: n, session: session, local: n.LocalAddr, remote: addr, dns: n.DNSAddrs, deliver: deliver, Sent: make(chan []byte, 1024)}
	n.links[session] = l
	select {
	case n.att <- l:
	default:
	}
	return l, nil
}

// Attached returns the next link attached (blocking until one is or ctx ends).
func (n *Network) Attached(ctx context.Context) (*Link, error) {
	select {
	case l := <-n.att:
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Link is one session's fake attachment.
type Link struct {
	n             *Network
	session       string
	local, remote netip.Addr
	dns           []netip.Addr
	deliver       func([]byte)
	Sent          chan []byte // packets the client sent, in order
	mu            sync.Mutex
	closed        bool
	mtu           int
}

// MTU is the last MTU the session set (0 = never).
func (l *Link) MTU() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mtu
}

// SetMTU implements ppp.MTUSetter.
func (l *Link) SetMTU(mtu int) {
	l.mu.Lock()
	l.mtu = mtu
	l.mu.Unlock()
}

// Local implements ppp.NetLink.
func (l *Link) Local() netip.Addr { return l.local }

// Remote implements ppp.NetLink.
func (l *Link) Remote() netip.Addr { return l.remote }

// DNS implements ppp.NetLink.
func (l *Link) DNS() []netip.Addr { return l.dns }

// Send implements ppp.NetLink.
func (l *Link) Send(pkt []byte) error {
	c := make([]byte, len(pkt))
	copy(c, pkt)
	select {
	case l.Sent <- c:
	default:
	}
	return nil
}

// Close implements ppp.NetLink; the address goes back to the pool.
func (l *Link) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.n.mu.Lock()
	l.n.pool = append(l.n.pool, l.remote)
	delete(l.n.links, l.session)
	l.n.mu.Unlock()
	return nil
}

// Closed reports whether the session released the link.
func (l *Link) Closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Deliver sends an IP packet toward the client, as the network would.
func (l *Link) Deliver(pkt []byte) { l.deliver(pkt) }

// Pipe returns the two ends of an in-memory line. Each Write is one unit:
// with probability loss it is dropped, with probability reorder it is held
// back and sent after the next one. seed makes the choices repeatable.
func Pipe(loss, reorder float64, seed uint64) (a, b io.ReadWriteCloser) {
	ab := make(chan []byte, 4096)
	ba := make(chan []byte, 4096)
	done := make(chan struct{})
	var once sync.Once
	closeFn := func() { once.Do(func() { close(done) }) }
	r := rand.New(rand.NewPCG(seed, seed+1))
	mu := &sync.Mutex{}
	a = &pipeEnd{in: ba, out: ab, done: done, close: closeFn, rnd: r, mu: mu, loss: loss, reorder: reorder}
	b = &pipeEnd{in: ab, out: ba, done: done, close: closeFn, rnd: r, mu: mu, loss: loss, reorder: reorder}
	return a, b
}

type pipeEnd struct {
	in, out chan []byte
	done    chan struct{}
	close   func()
	buf     []byte
	hmu     sync.Mutex // guards held
	held    []byte

	mu            *sync.Mutex // guards rnd
	rnd           *rand.Rand
	loss, reorder float64
}

func (p *pipeEnd) Read(b []byte) (int, error) {
	for len(p.buf) == 0 {
		select {
		case m := <-p.in:
			p.buf = m
		case <-p.done:
			return 0, io.EOF
		}
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

func (p *pipeEnd) Write(b []byte) (int, error) {
	select {
	case <-p.done:
		return 0, io.ErrClosedPipe
	default:
	}
	m := make([]byte, len(b))
	copy(m, b)
	p.mu.Lock()
	drop := p.rnd.Float64() < p.loss
	hold := p.rnd.Float64() < p.reorder
	p.mu.Unlock()
	if drop {
		return len(b), nil
	}
	p.hmu.Lock()
	defer p.hmu.Unlock()
	if hold && p.held == nil {
		// Overtaken by the next write, or sent on its own 50 ms later:
		// reordering on a real line is bounded in time.
		p.held = m
		time.AfterFunc(50*time.Millisecond, func() {
			p.hmu.Lock()
			defer p.hmu.Unlock()
			p.flushLocked()
		})
		return len(b), nil
	}
	if !p.sendLocked(m) {
		return 0, io.ErrClosedPipe
	}
	p.flushLocked()
	return len(b), nil
}

func (p *pipeEnd) flushLocked() {
	if p.held != nil {
		p.sendLocked(p.held)
		p.held = nil
	}
}

func (p *pipeEnd) sendLocked(m []byte) bool {
	select {
	case p.out <- m:
		return true
	case <-p.done:
		return false
	}
}

func (p *pipeEnd) Close() error {
	p.close()
	return nil
}
