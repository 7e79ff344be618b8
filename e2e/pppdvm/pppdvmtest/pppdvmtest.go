// Package pppdvmtest holds what the real-pppd tests share: the skip rule,
// the small IP side that answers the guest's pings, and a writer that sends
// the guest console to the test log.
package pppdvmtest

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/isp-box/isp-box/e2e/pppdvm"
	"github.com/isp-box/isp-box/ppp"
)

// NeedVM skips t in -short mode, and unless a VM can be booted; when
// pppdvm.RequireEnv is set a missing VM fails t instead.
func NeedVM(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a qemu VM with Debian's pppd (10-20 s): skipped with -short")
	}
	if err := pppdvm.Available(); err != nil {
		if os.Getenv(pppdvm.RequireEnv) != "" {
			t.Fatalf("%s is set but: %v", pppdvm.RequireEnv, err)
		}
		t.Skipf("real-pppd VM not available: %v", err)
	}
}

// TestLog returns a writer that logs each line written to it on t, with
// prefix.
func TestLog(t testing.TB, prefix string) *LogWriter { return &LogWriter{t: t, prefix: prefix} }

// LogWriter is TestLog's writer.
type LogWriter struct {
	t      testing.TB
	prefix string
}

// Write logs each line of p.
func (l *LogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.t.Log(l.prefix + strings.TrimRight(line, "\r"))
	}
	return len(p), nil
}

// EchoNet is the smallest IP side (a ppp.Network) that lets a real ping
// succeed: every session gets Gateway:Client, and echo requests to Gateway
// are answered; everything else is dropped (the real NAT is netstack's and
// is tested there).
type EchoNet struct {
	Gateway, Client netip.Addr
	echoes          atomic.Int64
}

var _ ppp.Network = (*EchoNet)(nil)

// Echoes is the number of echo requests answered so far.
func (n *EchoNet) Echoes() int64 { return n.echoes.Load() }

// Attach implements ppp.Network.
func (n *EchoNet) Attach(ctx context.Context, session string, want netip.Addr, deliver func(pkt []byte)) (ppp.NetLink, error) {
	l := &echoLink{n: n, deliver: deliver, out: make(chan []byte, 64), done: make(chan struct{})}
	l.wg.Add(1)
	go l.run()
	return l, nil
}

// echoLink replies from its own goroutine: deliver must not be called from
// inside Send, which runs on the session's owner goroutine.
type echoLink struct {
	n       *EchoNet
	deliver func([]byte)
	out     chan []byte
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// Local, Remote, DNS, Send and Close implement ppp.NetLink.
func (l *echoLink) Local() netip.Addr  { return l.n.Gateway }
func (l *echoLink) Remote() netip.Addr { return l.n.Client }
func (l *echoLink) DNS() []netip.Addr  { return nil }

func (l *echoLink) Send(pkt []byte) error {
	reply, err := echoReply(pkt, l.n.Gateway)
	if err != nil {
		return nil // not for us: dropped, as a router without a route would
	}
	l.n.echoes.Add(1)
	select {
	case l.out <- reply:
	case <-l.done:
	}
	return nil
}

func (l *echoLink) run() {
	defer l.wg.Done()
	for {
		select {
		case p := <-l.out:
			l.deliver(p)
		case <-l.done:
			return
		}
	}
}

func (l *echoLink) Close() error {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
	return nil
}

var errNotEcho = errors.New("not an ICMP echo request to the gateway")

// echoReply turns an IPv4 ICMP echo request (RFC 792) to gw into its reply:
// addresses swapped, type 0, both checksums recomputed (RFC 791 §3.1,
// RFC 1071).
func echoReply(pkt []byte, gw netip.Addr) ([]byte, error) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return nil, errNotEcho
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < 20 || total < ihl+8 || total > len(pkt) || pkt[9] != 1 {
		return nil, errNotEcho
	}
	if dst := netip.AddrFrom4([4]byte(pkt[16:20])); dst != gw {
		return nil, errNotEcho
	}
	if checksum.Checksum(pkt[:ihl], 0) != 0xffff || checksum.Checksum(pkt[ihl:total], 0) != 0xffff {
		return nil, errNotEcho // corrupted
	}
	icmp := pkt[ihl:total]
	if icmp[0] != 8 || icmp[1] != 0 {
		return nil, errNotEcho
	}
	r := make([]byte, total)
	copy(r, pkt[:total])
	copy(r[12:16], pkt[16:20])
	copy(r[16:20], pkt[12:16])
	r[8] = 64 // TTL
	r[10], r[11] = 0, 0
	binary.BigEndian.PutUint16(r[10:12], ^checksum.Checksum(r[:ihl], 0))
	ri := r[ihl:]
	ri[0] = 0 // echo reply
	ri[2], ri[3] = 0, 0
	binary.BigEndian.PutUint16(ri[2:4], ^checksum.Checksum(ri, 0))
	return r, nil
}
