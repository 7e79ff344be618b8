// Package pool hands out the clients' IPv4 addresses: a fixed address per
// line when it is free, otherwise the next free one of a prefix. An address is
// never held by two sessions at once; the gateway and the prefix's network and
// broadcast addresses are never handed out.
package pool

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// ErrExhausted is returned when every address of the prefix is in use.
var ErrExhausted = errors.New("pool: no free address")

// ErrUnusable is returned for an address that can never be a client's
// (unspecified, loopback, multicast, the gateway...).
var ErrUnusable = errors.New("pool: address not usable for a client")

// Pool is safe for concurrent use.
type Pool struct {
	prefix   netip.Prefix
	first    netip.Addr // first assignable address of prefix
	last     netip.Addr // last assignable address of prefix
	reserved map[netip.Addr]bool

	mu   sync.Mutex
	used map[netip.Addr]string // guarded by mu: address -> owner
	next netip.Addr            // guarded by mu: where the next search starts
}

// New returns a pool over prefix (IPv4 only). reserved addresses (the gateway)
// are never handed out. A /31 or /32 has no network or broadcast address
// (RFC 3021); any shorter prefix keeps both out of the pool.
func New(prefix netip.Prefix, reserved ...netip.Addr) (*Pool, error) {
	if !prefix.IsValid() || !prefix.Addr().Is4() {
		return nil, fmt.Errorf("pool: prefix %v: not an IPv4 prefix", prefix)
	}
	prefix = prefix.Masked()
	p := &Pool{prefix: prefix, reserved: map[netip.Addr]bool{}, used: map[netip.Addr]string{}}
	for _, r := range reserved {
		if r.IsValid() {
			p.reserved[r] = true
		}
	}
	p.first, p.last = prefix.Addr(), lastAddr(prefix)
	if prefix.Bits() <= 30 {
		p.first, p.last = p.first.Next(), p.last.Prev()
	}
	p.next = p.first
	return p, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Prefix returns the pool's prefix.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// usable reports whether a may ever be given to a client.
func (p *Pool) usable(a netip.Addr) bool {
	if !a.Is4() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() ||
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || p.reserved[a] {
		return false
	}
	if p.prefix.Contains(a) && (a.Less(p.first) || p.last.Less(a)) {
		return false // network or broadcast address of the pool
	}
	return true
}

// Allocate gives owner an address: want when it is valid, usable and free
// (a fixed address may lie outside the prefix, as pppd's local:remote
// option allows), otherwise the next free address of the prefix, searched
// round-robin so that a just-released address is reused last.
func (p *Pool) Allocate(owner string, want netip.Addr) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if want.IsValid() && p.usable(want) {
		if _, busy := p.used[want]; !busy {
			p.used[want] = owner
			return want, nil
		}
	}
	a := p.next
	for {
		if _, busy := p.used[a]; !busy && p.usable(a) {
			p.used[a] = owner
			p.next = p.step(a)
			return a, nil
		}
		a = p.step(a)
		if a == p.next {
			return netip.Addr{}, fmt.Errorf("%w in %v (%d in use)", ErrExhausted, p.prefix, len(p.used))
		}
	}
}

func (p *Pool) step(a netip.Addr) netip.Addr {
	if a == p.last {
		return p.first
	}
	return a.Next()
}

// Release frees a; releasing a free address does nothing.
func (p *Pool) Release(a netip.Addr) {
	p.mu.Lock()
	delete(p.used, a)
	p.mu.Unlock()
}

// Owner returns who holds a, if anyone.
func (p *Pool) Owner(a netip.Addr) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o, ok := p.used[a]
	return o, ok
}

// InUse returns how many addresses are held.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.used)
}
