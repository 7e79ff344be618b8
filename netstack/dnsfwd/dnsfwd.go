// Package dnsfwd is the DNS forwarder the userspace box runs on its gateway
// address: names in the host's hosts file are answered directly, every other
// query is relayed unchanged to the host's resolvers (RFC 1035 §4.2: UDP, and
// TCP with a two-byte length prefix). When no upstream answers, the client
// gets SERVFAIL at once rather than a timeout, so a box with no working
// upstream still resolves localhost and the other hosts-file names.
package dnsfwd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Config tells the forwarder where to look.
type Config struct {
	// Upstream servers; empty means the nameserver lines of ResolvConf.
	Upstream []netip.AddrPort
	// ResolvConf is read when Upstream is empty; "" = /etc/resolv.conf.
	ResolvConf string
	// HostsFile answers names locally; "" = /etc/hosts, "-" = none.
	HostsFile string
	// Timeout per upstream attempt; 0 = 2 s.
	Timeout time.Duration
	// HostsTTL is the TTL of answers from the hosts file; 0 = 60 s.
	HostsTTL uint32
	Log      *slog.Logger
}

// Forwarder answers raw DNS queries. Safe for concurrent use.
type Forwarder struct {
	cfg      Config
	log      *slog.Logger
	upstream []netip.AddrPort

	mu        sync.Mutex // guards hosts and hostsMod
	hosts     Hosts
	hostsMod  time.Time
	hostsSize int64
}

// maxUDP is the largest reply sent over UDP without EDNS0 (RFC 1035 §4.2.1).
const maxUDP = 512

// New returns a forwarder; it reads the resolver configuration once and the
// hosts file whenever it changes.
func New(cfg Config) *Forwarder {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.HostsTTL == 0 {
		cfg.HostsTTL = 60
	}
	if cfg.HostsFile == "" {
		cfg.HostsFile = "/etc/hosts"
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{cfg: cfg, log: log, upstream: cfg.Upstream}
	if len(f.upstream) == 0 {
		if b, err := os.ReadFile(cfg.ResolvConf); err == nil {
			f.upstream = ParseResolvConf(b)
		}
	}
	log.Debug("dns forwarder", "upstream", f.upstream, "hosts", cfg.HostsFile)
	return f
}

// Upstream returns the servers queries are relayed to.
func (f *Forwarder) Upstream() []netip.AddrPort { return f.upstream }

// ParseResolvConf returns the nameserver addresses of resolv.conf(5) text.
func ParseResolvConf(b []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out
}

func (f *Forwarder) loadHosts() Hosts {
	if f.cfg.HostsFile == "-" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.cfg.HostsFile)
	if err != nil {
		return f.hosts
	}
	if f.hosts == nil || !fi.ModTime().Equal(f.hostsMod) || fi.Size() != f.hostsSize {
		b, err := os.ReadFile(f.cfg.HostsFile)
		if err == nil {
			f.hosts, f.hostsMod, f.hostsSize = ParseHosts(b), fi.ModTime(), fi.Size()
		}
	}
	return f.hosts
}

var errNotQuery = errors.New("dnsfwd: not a query")

// Answer returns the reply to one raw query. overTCP selects how upstream is
// asked (a client that got a truncated UDP reply retries over TCP, RFC 7766).
// A query that cannot be parsed gets an error and no reply; a parseable
// query always gets a reply (SERVFAIL when nobody answered).
func (f *Forwarder) Answer(ctx context.Context, query []byte, overTCP bool) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, fmt.Errorf("dnsfwd: header: %w", err)
	}
	if h.Response {
		return nil, errNotQuery
	}
	q, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("dnsfwd: question: %w", err)
	}
	if h.OpCode != 0 {
		return reply(h, q, dnsmessage.RCodeNotImplemented, nil, 0)
	}
	if q.Class == dnsmessage.ClassINET && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeAAAA) {
		if addrs, ok := f.loadHosts().Lookup(q.Name.String()); ok {
			return reply(h, q, dnsmessage.RCodeSuccess, addrs, f.cfg.HostsTTL)
		}
	}
	for _, up := range f.upstream {
		resp, err := f.exchange(ctx, up, query, h.ID, overTCP)
		if err == nil {
			return resp, nil
		}
		f.log.Debug("dns upstream failed", "server", up, "name", q.Name.String(), "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return reply(h, q, dnsmessage.RCodeServerFailure, nil, 0)
}

// reply builds a response to h/q carrying addrs of q's type.
func reply(h dnsmessage.Header, q dnsmessage.Question, rcode dnsmessage.RCode, addrs []netip.Addr, ttl uint32) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, maxUDP), dnsmessage.Header{
		ID: h.ID, Response: true, OpCode: h.OpCode, Authoritative: rcode == dnsmessage.RCodeSuccess,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode,
	})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: ttl}
	for _, a := range addrs {
		var err error
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			err = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// exchange relays query to one upstream server and checks that the reply
// belongs to it (same ID, RFC 5452 §9.1 style matching on the ID only: the
// question is the client's own and is passed back unchanged).
func (f *Forwarder) exchange(ctx context.Context, up netip.AddrPort, query []byte, id uint16, overTCP bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	network := "udp"
	if overTCP {
		network = "tcp"
	}
	c, err := d.DialContext(ctx, network, up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if overTCP {
		msg := make([]byte, 2+len(query))
		binary.BigEndian.PutUint16(msg, uint16(len(query)))
		copy(msg[2:], query)
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		resp, err := readTCPMessage(c)
		if err != nil {
			return nil, err
		}
		if len(resp) < 2 || binary.BigEndian.Uint16(resp) != id {
			return nil, errors.New("dnsfwd: reply id mismatch")
		}
		return resp, nil
	}
	if _, err := c.Write(query); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		if n >= 12 && binary.BigEndian.Uint16(buf) == id && buf[2]&0x80 != 0 {
			return append([]byte(nil), buf[:n]...), nil
		}
		// A stray datagram (late reply to an earlier query): keep waiting.
	}
}

func readTCPMessage(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// truncate turns a UDP reply longer than maxUDP into a header+question
// reply with TC set, so that the client retries over TCP (RFC 1035 §4.2.1).
// The queries from a dial-up client carry no EDNS0 of their own that we
// honour, so 512 bytes is the limit.
func truncate(resp []byte) []byte {
	if len(resp) <= maxUDP {
		return resp
	}
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		return resp[:maxUDP]
	}
	q, err := p.Question()
	if err != nil {
		return resp[:maxUDP]
	}
	h.Truncated = true
	b := dnsmessage.NewBuilder(nil, h)
	_ = b.StartQuestions()
	_ = b.Question(q)
	out, err := b.Finish()
	if err != nil {
		return resp[:maxUDP]
	}
	return out
}

// maxInFlight bounds the queries handled at once per listener.
const maxInFlight = 64

// ServeUDP answers queries arriving on pc until ctx ends or pc fails. It
// closes pc when ctx ends.
func (f *Forwarder) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // overloaded: the client will retry
		}
		q := append([]byte(nil), buf[:n]...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := f.Answer(ctx, q, false)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(truncate(resp), from)
		}()
	}
}

// ServeTCP answers length-prefixed queries on connections accepted from l
// until ctx ends. It closes l when ctx ends.
func (f *Forwarder) ServeTCP(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			for {
				// RFC 7766 §6.2.3: idle connections may be closed; 10 s is generous.
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				q, err := readTCPMessage(c)
				if err != nil {
					return
				}
				resp, err := f.Answer(ctx, q, true)
				if err != nil {
					return
				}
				msg := make([]byte, 2+len(resp))
				binary.BigEndian.PutUint16(msg, uint16(len(resp)))
				copy(msg[2:], resp)
				if _, err := c.Write(msg); err != nil {
					return
				}
			}
		}()
	}
}
