package pbx

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

// Binding is one registration: where a peer can be reached.
type Binding struct {
	Peer      string         // peer name (the AOR's user part)
	Contact   string         // Contact URI as registered, e.g. "sip:pap2t-ispmodem@10.1.8.112:5060"
	Source    netip.AddrPort // where the REGISTER came from (received/rport)
	Username  string         // the Contact's user part (chan_sip shows it as name/username)
	UserAgent string
	CallID    string
	CSeq      uint32
	Expires   time.Time
	NAT       bool // the REGISTER's Via differed from its source: the peer is behind NAT
}

// BindingStore persists bindings so that a restarted box still knows where
// its peers are. internal/box adapts internal/store to it. Calls are short
// and made from request handlers.
type BindingStore interface {
	LoadBindings(ctx context.Context) ([]Binding, error)
	SaveBinding(ctx context.Context, b Binding) error
	DeleteBinding(ctx context.Context, peer string) error
}

// MemoryBindings is a BindingStore in memory, for tests and for a box run
// without a database. Safe for concurrent use.
type MemoryBindings struct {
	mu sync.Mutex
	m  map[string]Binding
}

// NewMemoryBindings returns an empty store.
func NewMemoryBindings() *MemoryBindings { return &MemoryBindings{m: map[string]Binding{}} }

// LoadBindings returns every stored binding.
func (m *MemoryBindings) LoadBindings(context.Context) ([]Binding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Binding, 0, len(m.m))
	for _, b := range m.m {
		out = append(out, b)
	}
	return out, nil
}

// SaveBinding stores b, replacing the peer's previous binding.
func (m *MemoryBindings) SaveBinding(_ context.Context, b Binding) error {
	m.mu.Lock()
	m.m[b.Peer] = b
	m.mu.Unlock()
	return nil
}

// DeleteBinding removes the peer's binding.
func (m *MemoryBindings) DeleteBinding(_ context.Context, peer string) error {
	m.mu.Lock()
	delete(m.m, peer)
	m.mu.Unlock()
	return nil
}

// expiryGrace: chan_sip keeps a binding 10 s past its expiry (C 17152).
const expiryGrace = 10 * time.Second

func (s *Server) loadBindings(ctx context.Context) {
	list, err := s.store.LoadBindings(ctx)
	if err != nil {
		s.log.Error("loading bindings", "err", err)
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range list {
		p := s.peers[b.Peer]
		if p == nil || now.After(b.Expires.Add(expiryGrace)) {
			continue
		}
		bb := b
		p.binding = &bb
		p.nextPoke = now // qualify at once
	}
}

// contactAddr is the host:port of a SIP URI with a numeric host.
func contactAddr(uri string) (netip.AddrPort, bool) {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// viaNAT reports whether the top Via's sent-by differs from the packet's
// source, which is how chan_sip detects NAT for nat=auto_*.
func viaNAT(req *sip.Request, src netip.AddrPort) bool {
	v := req.Via()
	a, err := netip.ParseAddr(strings.Trim(v.Host, "[]"))
	port := v.Port
	if port == 0 {
		port = 5060
	}
	return err != nil || a.Unmap() != src.Addr() || port != int(src.Port())
}

// handleRegister is the registrar (RFC 3261 §10.3; chan_sip register_verify
// and parse_register_contact).
func (s *Server) handleRegister(req *sip.Request, tx sip.ServerTransaction) {
	src := sourceOf(req)
	name := req.To().Address.User
	pc, ok := s.admit(req, src, true, s.txReply(tx, req))
	if !ok {
		return
	}
	g := s.general()

	// Expiry: Expires header, else ;expires= on the Contact, else defaultexpiry.
	expires := -1
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			expires = n
		}
	}
	ch := req.Contact()
	if ch != nil && expires < 0 {
		if v, ok := ch.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				expires = n
			}
		}
	}
	now := s.now()
	date := sip.NewHeader("Date", now.UTC().Format(time.RFC1123))

	if ch == nil { // a query: answer with the current binding (RFC 3261 §10.3 step 8)
		s.mu.Lock()
		var b *Binding
		if p := s.peers[name]; p != nil && p.binding != nil {
			bb := *p.binding
			b = &bb
		}
		s.mu.Unlock()
		if b == nil {
			s.respond(tx, req, 200, "OK", nil, date)
			return
		}
		left := int(b.Expires.Sub(now).Seconds())
		s.respond(tx, req, 200, "OK", nil, date, sip.NewHeader("Contact", "<"+b.Contact+">;expires="+strconv.Itoa(max(left, 0))))
		return
	}
	if ch.Address.Wildcard || expires == 0 {
		if ch.Address.Wildcard && expires != 0 {
			s.respond(tx, req, 400, "Bad Request", nil) // RFC 3261 §10.3 step 6
			return
		}
		s.unregister(name, "unregister")
		s.respond(tx, req, 200, "OK", nil, date)
		return
	}
	if expires < 0 {
		expires = int(g.DefaultExpiry / time.Second)
	}
	// clamp like chan_sip: no 423 for REGISTER
	if e := time.Duration(expires) * time.Second; e > g.MaxExpiry {
		expires = int(g.MaxExpiry / time.Second)
	} else if e < g.MinExpiry {
		expires = int(g.MinExpiry / time.Second)
	}
	curi := ch.Address.String()
	b := Binding{
		Peer: name, Contact: curi, Source: src, Username: ch.Address.User,
		CallID: req.CallID().Value(), CSeq: req.CSeq().SeqNo,
		Expires: now.Add(time.Duration(expires) * time.Second), NAT: viaNAT(req, src),
	}
	if ua := req.GetHeader("User-Agent"); ua != nil {
		b.UserAgent = ua.Value()
	}
	if !aclOK(pc, b) {
		s.respond(tx, req, 403, "Forbidden", nil)
		return
	}
	s.mu.Lock()
	p := s.peers[name]
	if p == nil { // removed by a reload meanwhile
		s.mu.Unlock()
		s.respond(tx, req, 403, "Forbidden", nil)
		return
	}
	refresh := p.binding != nil && p.binding.Source == b.Source && p.binding.Contact == b.Contact
	p.binding = &b
	if !refresh {
		p.nextPoke = now // chan_sip: sip_poke_peer(peer, 0) after "Registered SIP" (C 17184)
		if p.lastms < 0 {
			p.lastms = 0
		}
	}
	pk, requalify := s.requalifyLocked(p, refresh)
	s.mu.Unlock()
	if requalify {
		s.runPoke(s.runCtx, pk)
	}
	if err := s.store.SaveBinding(s.runCtx, b); err != nil {
		s.log.Error("saving binding", "peer", name, "err", err)
	}
	s.respond(tx, req, 200, "OK", nil, date,
		sip.NewHeader("Expires", strconv.Itoa(expires)),
		sip.NewHeader("Contact", "<"+curi+">;expires="+strconv.Itoa(expires)))
	if !refresh {
		s.log.Info("registered", "peer", name, "addr", src, "ua", b.UserAgent)
	}
	s.publish(bus.PeerRegistered{Peer: name, Contact: curi, Addr: src, UserAgent: b.UserAgent, Expires: b.Expires, Refresh: refresh})
	if !refresh && !requalify {
		// requalify started this peer's poke already; waking the
		// housekeeping walks every peer under s.mu, once per new
		// registration: with 10,000 lines registering that walk was
		// what the registrations queued behind.
		s.pokeNow()
	}
}

// aclOK: reserved for contactpermit/contactdeny; the peer's ACL already
// applied to the source.
func aclOK(*Peer, Binding) bool { return true }

func (s *Server) unregister(name, reason string) {
	s.mu.Lock()
	p := s.peers[name]
	had := p != nil && p.binding != nil
	if p != nil {
		p.binding = nil
		if p.cfg.Qualify > 0 {
			p.lastms = 0
		}
	}
	s.mu.Unlock()
	if err := s.store.DeleteBinding(s.runCtx, name); err != nil {
		s.log.Error("deleting binding", "peer", name, "err", err)
	}
	if had {
		s.log.Info("unregistered", "peer", name, "reason", reason)
		s.publish(bus.PeerUnregistered{Peer: name, Reason: reason})
		s.publishStatus(name)
	}
}
