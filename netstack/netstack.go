// Package netstack is the IP side of the box: it gives each PPP session an
// address and carries its packets to the world and back.
//
// Two modes share one front (Stack, Session): in userspace mode one gVisor
// stack terminates every client's TCP, UDP and ICMP and forwards them through
// ordinary host sockets (NAT by proxy, no privileges); in kernel mode one TUN
// device carries all sessions and an nftables table of the box's own
// masquerades them out of the uplink, as the seed's ppp0 + ip_forward +
// iptables MASQUERADE did.
//
// Whatever the mode, a packet from a session must carry that session's
// address as its source (no spoofing, BCP 38), and with Isolate set clients
// cannot reach each other.
//
// # Userspace mode
//
// The gVisor NIC is promiscuous and may spoof: it accepts a SYN to any
// address, and the TCP forwarder connects a host socket to that address
// before completing the client's handshake (refused or unreachable → RST).
// UDP flows get a host socket each, closed after Config.UDPTimeout of
// silence. ICMP echo to the gateway is answered by gVisor; to other hosts it
// goes out through an unprivileged ICMP socket where
// net.ipv4.ping_group_range allows, else through a raw ICMP socket when the
// process has CAP_NET_RAW (root on a kernel whose range is the default
// "1 0"); with neither, the start logs what to set and each echo is
// answered with Destination Unreachable, administratively prohibited, so
// the client's ping fails at once. Stack.ICMP says which path is in use.
// gateway:53 (UDP and TCP) is a DNS forwarder (package dnsfwd) that answers
// names of the host's hosts file and relays the rest to the host's
// resolvers; the DNS handed out in IPCP defaults to it.
//
// Reaching the host: 127.0.0.0/8 never comes from a client on the wire
// (RFC 1122 §3.2.1.3), so it is dropped. Instead, with HostLoopback set, a
// connection to the gateway address on any port but 53 is forwarded to the
// host's 127.0.0.1 on that port (QEMU's and slirp4netns's 10.0.2.2
// convention): http://192.168.32.1:8080/ from a client is the host's
// http://127.0.0.1:8080/. It is off by default: dial-in users should not
// reach services the host keeps on loopback.
//
// Strangers dial in (a line may need no login), so by default BlockPrivate
// refuses private, shared and link-local destinations (the host's LAN,
// 169.254.169.254) and BlockHost the host's own addresses, where every
// service listening on 0.0.0.0 would answer; Config.Allow and the DNS
// servers handed out are exempt. A client holds at most MaxSessionFlows
// forwarded TCP connections and UDP flows and all clients MaxFlows (each is
// a host descriptor and two goroutines); beyond, a SYN gets a RST and a
// UDP flow's datagrams are dropped, counted as ReasonFlowLimit and logged
// at most every 10 s. Flows end when idle: UDP after UDPTimeout, TCP after
// TCPTimeout, echoes after 5 s (64 in flight).
//
// # Kernel mode
//
// One TUN device (Config.TunName) with the gateway address, a /32 route per
// client (pppd's peer route), a proxy-ARP entry on the uplink for a client
// address inside the uplink's subnet (pppd's proxyarp), ip_forward on, and
// the nftables table Config.Table: masquerade of the clients out of the
// uplink, a forward chain that drops spoofed sources (and, as configured,
// client-to-client and private destinations) and clamps the MSS of passing
// SYNs to MTU-40. Close removes all of it and writes back an ip_forward of
// 0 it found; a run killed with -9 leaves the table and proxy entries, which
// the next start removes (the table's client set says which proxy entries
// were ours). The host's own firewall still applies: a forward policy of
// drop elsewhere (Docker's, for instance) must let the clients through.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/status"
	"github.com/isp-box/isp-box/netstack/pool"
)

// Options are the box-wide things a Stack is given.
type Options struct {
	Bus *bus.Bus     // may be nil
	Log *slog.Logger // may be nil
}

// ErrClosed is returned by a closed Session or Stack.
var ErrClosed = errors.New("netstack: closed")

// Drop reasons, as published in bus.NetDropped and counted per session;
// each is a stable metric name (bus.DropReason).
const (
	ReasonSpoofed    = string(bus.DropSpoofed)
	ReasonIsolated   = string(bus.DropIsolated)
	ReasonMalformed  = string(bus.DropMalformed)
	ReasonNoRoute    = string(bus.DropNoRoute)
	ReasonForbidden  = string(bus.DropForbidden)
	ReasonPingDenied = string(bus.DropPingDenied)
	ReasonTTL        = string(bus.DropTTL)
	ReasonFlowLimit  = string(bus.DropFlowLimit)
)

// engine is what a mode does with packets; the Stack does the checks that
// are the same in both modes.
type engine interface {
	// attach prepares the path to a new session's address.
	attach(s *Session) error
	// detach removes it again.
	detach(s *Session)
	// send takes a packet from the client that passed the checks. It must
	// not retain pkt.
	send(s *Session, pkt []byte)
	// close stops the engine and removes what it installed.
	close() error
}

// Stack is the network side of the box. Safe for concurrent use.
type Stack struct {
	cfg  Config
	log  *slog.Logger
	bus  *bus.Bus
	pool *pool.Pool
	eng  engine

	defaultDNS []netip.Addr // handed out when cfg.DNS is empty
	host       hostAddrs    // the host's own addresses, for BlockHost

	mu       sync.RWMutex
	sessions map[netip.Addr]*Session // guarded by mu: by client address
	closed   bool                    // guarded by mu

	closeOnce sync.Once
	closeErr  error

	totalsMu sync.Mutex
	totals   map[string]uint64 // guarded by totalsMu: drops by reason over the stack's life
}

// New starts the network side in cfg.Mode. In kernel mode it needs
// CAP_NET_ADMIN, and without it returns a one-line error saying so; it binds
// to the network namespace of the calling thread. The stack runs until
// Close (cancelling ctx does not stop it: only Close removes kernel state
// in order).
func New(ctx context.Context, cfg Config, opts Options) (*Stack, error) {
	d := DefaultConfig()
	if cfg.Mode == "" {
		cfg.Mode = d.Mode
	}
	if cfg.MTU == 0 {
		cfg.MTU = d.MTU
	}
	if cfg.TunName == "" {
		cfg.TunName = d.TunName
	}
	if cfg.Table == "" {
		cfg.Table = d.Table
	}
	if cfg.UDPTimeout == 0 {
		cfg.UDPTimeout = 60 * time.Second
	}
	if cfg.TCPTimeout == 0 {
		cfg.TCPTimeout = time.Hour
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxSessionFlows == 0 {
		cfg.MaxSessionFlows = DefaultMaxSessionFlows
	}
	if !cfg.Gateway.Is4() {
		return nil, fmt.Errorf("netstack: gateway %v: need an IPv4 address", cfg.Gateway)
	}
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("netstack: mtu %d out of range 576..65535", cfg.MTU)
	}
	p, err := pool.New(cfg.Pool, cfg.Gateway)
	if err != nil {
		return nil, fmt.Errorf("netstack: %w", err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stack{cfg: cfg, log: log.With("comp", "netstack"), bus: opts.Bus, pool: p, sessions: map[netip.Addr]*Session{}}
	switch cfg.Mode {
	case Userspace:
		s.defaultDNS = []netip.Addr{cfg.Gateway} // the built-in forwarder
		s.eng, err = newUserspace(ctx, s)
	case Kernel:
		s.defaultDNS = kernelDNS() // before the table, which allows them
		s.eng, err = newKernel(ctx, s)
	default:
		return nil, fmt.Errorf("netstack: mode %q: want %q or %q", cfg.Mode, Userspace, Kernel)
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("network up", "mode", cfg.Mode, "gateway", cfg.Gateway, "pool", cfg.Pool)
	return s, nil
}

// Attach gives session an address (want when set and free, otherwise one
// from the pool) and starts carrying its packets. deliver is called with
// every IP packet for the client, never concurrently for one session; it
// must copy what it keeps and not block for long.
func (s *Stack) Attach(ctx context.Context, session string, want netip.Addr, deliver func(pkt []byte)) (*Session, error) {
	if deliver == nil {
		return nil, errors.New("netstack: attach: nil deliver")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	addr, err := s.pool.Allocate(session, want)
	if err != nil {
		return nil, fmt.Errorf("netstack: attach %s: %w", session, err)
	}
	dns := s.cfg.DNS
	if len(dns) == 0 {
		dns = s.defaultDNS
	}
	sess := &Session{
		st: s, name: session, remote: addr, dns: append([]netip.Addr(nil), dns...),
		deliver: deliver, since: time.Now(), drops: map[string]*dropState{},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.pool.Release(addr)
		return nil, ErrClosed
	}
	s.sessions[addr] = sess
	s.mu.Unlock()
	if err := s.eng.attach(sess); err != nil {
		s.mu.Lock()
		delete(s.sessions, addr)
		s.mu.Unlock()
		s.pool.Release(addr)
		return nil, fmt.Errorf("netstack: attach %s: %w", session, err)
	}
	s.log.Info("session attached", "session", session, "remote", addr)
	return sess, nil
}

// lookup returns the session holding addr, if any.
func (s *Stack) lookup(addr netip.Addr) *Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions[addr]
}

// countDrop adds one drop to the stack-wide totals, which outlive sessions
// so that a monitored counter never goes down.
func (s *Stack) countDrop(reason string) {
	s.totalsMu.Lock()
	if s.totals == nil {
		s.totals = map[string]uint64{}
	}
	s.totals[reason]++
	s.totalsMu.Unlock()
}

// Dropped returns the packets dropped since the stack started, by reason,
// over every session, ended ones included.
func (s *Stack) Dropped() map[string]uint64 {
	s.totalsMu.Lock()
	defer s.totalsMu.Unlock()
	out := make(map[string]uint64, len(s.totals))
	for k, v := range s.totals {
		out[k] = v
	}
	return out
}

// Flows returns how many forwarded flows (TCP connections and UDP flows)
// all clients hold now; 0 in kernel mode, where conntrack keeps them.
func (s *Stack) Flows() int {
	if u, ok := s.eng.(*userspace); ok {
		_, n := u.flowCount(netip.Addr{})
		return n
	}
	return 0
}

// ICMP says how clients' echo requests reach the world.
func (s *Stack) ICMP() ICMPPath {
	if u, ok := s.eng.(*userspace); ok {
		return u.icmp
	}
	return ICMPKernel
}

// Status is the network side for `isp-box status`: mode, flows, drops by
// reason and every attached session's counters, sorted by session.
func (s *Stack) Status() status.Network {
	sessions := s.Sessions()
	slices.SortFunc(sessions, func(a, b SessionInfo) int { return strings.Compare(a.Session, b.Session) })
	return status.Network{Mode: string(s.cfg.Mode), ICMP: string(s.ICMP()), Flows: s.Flows(), Dropped: s.Dropped(), Sessions: sessions}
}

// Sessions returns the counters of every attached session.
func (s *Stack) Sessions() []SessionInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess.Info())
	}
	return out
}

// Close detaches every session and stops the stack; in kernel mode it removes
// the nftables table, the TUN device, routes and proxy-ARP entries.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		var all []*Session
		for _, sess := range s.sessions {
			all = append(all, sess)
		}
		s.mu.Unlock()
		for _, sess := range all {
			_ = sess.Close()
		}
		s.closeErr = s.eng.close()
		if s.closeErr != nil {
			s.log.Warn("network down", "mode", s.cfg.Mode, "err", s.closeErr)
		} else {
			s.log.Info("network down", "mode", s.cfg.Mode)
		}
	})
	return s.closeErr
}

// SessionInfo is a snapshot of one session's counters (internal/status's).
type SessionInfo = status.NetSession

// Session is one client's attachment. Safe for concurrent use.
type Session struct {
	st      *Stack
	name    string
	remote  netip.Addr
	dns     []netip.Addr
	deliver func([]byte)
	outMu   sync.Mutex // serialises deliver
	since   time.Time
	closed  atomic.Bool
	once    sync.Once

	pktsIn, bytesIn, pktsOut, bytesOut, dropped atomic.Uint64

	dropMu sync.Mutex            // guards drops
	drops  map[string]*dropState // by reason
}

type dropState struct {
	total   uint64
	pending uint64    // not yet published
	last    time.Time // of the last event
}

// Local returns the gateway address, the PPP link's local end.
func (s *Session) Local() netip.Addr { return s.st.cfg.Gateway }

// Remote returns the client's address.
func (s *Session) Remote() netip.Addr { return s.remote }

// DNS returns the servers to hand out in IPCP (RFC 1877).
func (s *Session) DNS() []netip.Addr { return append([]netip.Addr(nil), s.dns...) }

// Name returns the session name given to Attach.
func (s *Session) Name() string { return s.name }

// Send takes one IP packet from the client; it does not retain pkt. A packet
// whose source is not the client's address, or (with Isolate) that is for
// another client, is dropped and counted; a drop is not an error.
func (s *Session) Send(pkt []byte) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if len(pkt) < ipv4HeaderLen || pkt[0]>>4 != 4 || int(pkt[0]&0xf)*4 < ipv4HeaderLen || int(pkt[0]&0xf)*4 > len(pkt) {
		s.drop(ReasonMalformed)
		return nil
	}
	src := netip.AddrFrom4([4]byte(pkt[12:16]))
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	if src != s.remote {
		// BCP 38 / RFC 2827: only the address we gave the client.
		s.drop(ReasonSpoofed)
		return nil
	}
	if s.st.cfg.Isolate && dst != s.remote && s.st.lookup(dst) != nil {
		s.drop(ReasonIsolated)
		return nil
	}
	s.pktsIn.Add(1)
	s.bytesIn.Add(uint64(len(pkt)))
	s.st.eng.send(s, pkt)
	return nil
}

// output hands a packet to the client.
func (s *Session) output(pkt []byte) {
	if s.closed.Load() {
		return
	}
	s.pktsOut.Add(1)
	s.bytesOut.Add(uint64(len(pkt)))
	// Packets for one client come from several goroutines (gVisor's TCP
	// processors, the UDP relays, the TUN reader); the caller's deliver
	// need not be safe for concurrent use.
	s.outMu.Lock()
	s.deliver(pkt)
	s.outMu.Unlock()
}

// drop counts a dropped packet and publishes bus.NetDropped at most once per
// second per session and reason, carrying the count since the last event.
func (s *Session) drop(reason string) {
	s.dropped.Add(1)
	s.st.countDrop(reason)
	now := time.Now()
	s.dropMu.Lock()
	d := s.drops[reason]
	if d == nil {
		d = &dropState{}
		s.drops[reason] = d
	}
	d.total++
	d.pending++
	var n uint64
	if now.Sub(d.last) >= time.Second {
		n, d.pending, d.last = d.pending, 0, now
	}
	s.dropMu.Unlock()
	if n > 0 {
		s.publishDrop(reason, n)
	}
}

// notice publishes a box-level message about the network side.
func (s *Stack) notice(text string) {
	if s.bus != nil {
		s.bus.Publish(bus.Notice{Source: "netstack", Text: text})
	}
}

func (s *Session) publishDrop(reason string, n uint64) {
	s.st.log.Debug("dropped", "session", s.name, "reason", bus.DropReason(reason).String(), "count", n)
	if s.st.bus != nil {
		s.st.bus.Publish(bus.NetDropped{Session: s.name, Reason: bus.DropReason(reason), Count: n})
	}
}

// Info returns the session's counters.
func (s *Session) Info() SessionInfo {
	in := SessionInfo{
		Session: s.name, Remote: s.remote, Since: s.since,
		PktsIn: s.pktsIn.Load(), BytesIn: s.bytesIn.Load(),
		PktsOut: s.pktsOut.Load(), BytesOut: s.bytesOut.Load(),
		Dropped: s.dropped.Load(), Reasons: map[string]uint64{},
	}
	if u, ok := s.st.eng.(*userspace); ok {
		in.Flows, _ = u.flowCount(s.remote)
	}
	s.dropMu.Lock()
	for r, d := range s.drops {
		in.Reasons[r] = d.total
	}
	s.dropMu.Unlock()
	return in
}

// Close ends the session: its address goes back to the pool and what the
// mode installed for it is removed. Drops not yet published are published.
func (s *Session) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.st.eng.detach(s)
		s.st.mu.Lock()
		if s.st.sessions[s.remote] == s {
			delete(s.st.sessions, s.remote)
		}
		s.st.mu.Unlock()
		s.st.pool.Release(s.remote)
		s.dropMu.Lock()
		pend := map[string]uint64{}
		for r, d := range s.drops {
			if d.pending > 0 {
				pend[r], d.pending = d.pending, 0
			}
		}
		s.dropMu.Unlock()
		for r, n := range pend {
			s.publishDrop(r, n)
		}
		s.st.log.Info("session detached", "session", s.name, "remote", s.remote)
	})
	return nil
}

const ipv4HeaderLen = 20

// Run holds the stack up until ctx is done, then closes it (see Close) and
// returns Close's error. The stack serves from New on: Ready is closed.
func (s *Stack) Run(ctx context.Context) error {
	<-ctx.Done()
	return s.Close()
}

// Ready is closed: New returns a stack that serves.
func (s *Stack) Ready() <-chan struct{} { return closedChan }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
