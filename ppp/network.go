package ppp

import (
	"context"
	"net/netip"
)

// Network is what a session needs of the IP side. netstack satisfies it
// through a small adapter in internal/box.
type Network interface {
	// Attach gives the session its addresses. want is the configured
	// remote address (zero = any from the pool). deliver is called with each
	// IP packet for the client; it must not retain pkt after returning and
	// must not block long (the session copies and queues it, dropping and
	// counting when its queue is full).
	Attach(ctx context.Context, session string, want netip.Addr, deliver func(pkt []byte)) (NetLink, error)
}

// NetLink is one session's attachment to the network.
type NetLink interface {
	Local() netip.Addr  // the box's address on the link (the client's gateway)
	Remote() netip.Addr // the client's address
	DNS() []netip.Addr  // resolvers to offer when Config.DNS is empty
	// Send hands the network an IP packet from the client. pkt is not
	// retained after Send returns.
	Send(pkt []byte) error
	// Close releases the address.
	Close() error
}

// MTUSetter is optionally implemented by a NetLink that can honour the
// session's MTU: min(the client's MRU, Config.MTU), set when IPCP opens, as
// pppd sets the interface MTU. Packets larger than the client's MRU are
// otherwise dropped and counted by the session.
type MTUSetter interface {
	SetMTU(mtu int)
}
