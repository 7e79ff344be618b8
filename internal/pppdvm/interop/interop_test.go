package interop

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/pppdvm"
	"github.com/isp-box/isp-box/ppp"
)

// The seed setup's addresses (shared/reference/seed-setup.md: options.ttyS0
// `192.168.32.1:192.168.32.105`, `ms-dns 8.8.8.8`, pap-secrets `dial * "dial" *`).
var (
	gateway = netip.MustParseAddr("192.168.32.1")
	client  = netip.MustParseAddr("192.168.32.105")
	dns     = netip.MustParseAddr("8.8.8.8")
)

func needVM(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a qemu VM with Debian's pppd (10-20 s): skipped with -short")
	}
	if err := pppdvm.Available(); err != nil {
		t.Skipf("real-pppd VM not available: %v", err)
	}
}

// TestRealPPPD dials the project's PPP server from Debian's pppd 2.4.9 over
// the VM's serial line (a direct line: no modem), once per authentication
// protocol the server requires, and checks what pppd itself reports: the
// seed's addresses, ms-dns in both DNS slots, and 3 of 3 pings to the
// gateway answered through the server's Network. A wrong password must
// fail on both sides.
func TestRealPPPD(t *testing.T) {
	needVM(t)
	tests := []struct {
		name     string
		server   ppp.AuthProto // what the server requires
		client   string        // what pppd accepts (it refuses the others)
		password string
		wantFail bool
	}{
		{name: "pap", server: ppp.AuthPAP, client: pppdvm.AuthPAP, password: "dial"},
		{name: "chap-md5", server: ppp.AuthCHAP, client: pppdvm.AuthCHAP, password: "dial"},
		{name: "mschapv2", server: ppp.AuthMSCHAPv2, client: pppdvm.AuthMSCHAPv2, password: "dial"},
		{name: "pap wrong password", server: ppp.AuthPAP, client: pppdvm.AuthPAP, password: "wrong", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()

			vm, err := pppdvm.Start(ctx, pppdvm.Options{
				Mode: pppdvm.ModeDirect, User: "dial", Password: tt.password, Auth: tt.client,
				Log: testLog{t, "guest: "},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()

			cfg := ppp.DefaultConfig()
			cfg.Local, cfg.Remote = gateway, client
			cfg.DNS = []netip.Addr{dns}
			cfg.RequireAuth = true
			cfg.Auth = []ppp.AuthProto{tt.server}
			cfg.Debug = true
			nw := &echoNet{gateway: gateway, client: client}
			type served struct {
				rec ppp.Record
				err error
			}
			servedc := make(chan served, 1)
			go func() {
				rec, err := ppp.Serve(ctx, vm.Serial(), cfg, ppp.Options{
					Log:     slog.New(slog.NewTextHandler(testLog{t, "server: "}, &slog.HandlerOptions{Level: slog.LevelDebug})),
					Line:    "vm-ttyS1",
					Users:   []ppp.User{{Name: "dial", Server: "*", Secret: "dial", Addrs: []string{"*"}}},
					Network: nw,
				})
				servedc <- served{rec, err}
			}()

			res, werr := vm.Wait()
			t.Logf("guest: %s (%v after Start)", res.Line(), res.Elapsed.Round(10*time.Millisecond))
			var s served
			select {
			case s = <-servedc:
			case <-time.After(30 * time.Second):
				t.Fatal("ppp.Serve did not return within 30 s of the guest's power-off")
			}
			t.Logf("server: %+v err=%v", s.rec, s.err)

			if tt.wantFail {
				// pppd(8) EXIT STATUS 19: "We failed to authenticate ourselves
				// to the peer."
				if werr == nil || res.PPPDExit != 19 {
					t.Errorf("guest: err=%v pppd_exit=%d, want a failed call with pppd_exit=19", werr, res.PPPDExit)
				}
				if s.rec.Cause != ppp.CauseAuth || s.rec.Up != (time.Time{}) {
					t.Errorf("server record cause %q up %v, want %q and never up", s.rec.Cause, s.rec.Up, ppp.CauseAuth)
				}
				return
			}
			if werr != nil {
				t.Fatal(werr)
			}
			if res.Local != client || res.Remote != gateway {
				t.Errorf("pppd got local %v remote %v, want %v and %v", res.Local, res.Remote, client, gateway)
			}
			if res.DNS1 != dns || res.DNS2 != dns {
				t.Errorf("pppd got DNS %v %v, want %v in both (one ms-dns fills both, as pppd)", res.DNS1, res.DNS2, dns)
			}
			if res.PingSent != 3 || res.PingReceived != 3 {
				t.Errorf("pings %d/%d, want 3/3", res.PingReceived, res.PingSent)
			}
			if n := nw.echoes.Load(); n != 3 {
				t.Errorf("the network answered %d echo requests, want 3", n)
			}
			// The guest SIGTERMs pppd after the pings: it sends an LCP
			// Terminate-Request, so the server ends on the peer's request.
			if s.rec.Cause != ppp.CausePeer {
				t.Errorf("server record cause %q, want %q", s.rec.Cause, ppp.CausePeer)
			}
			if s.rec.User != "dial" || s.rec.Auth != tt.server || s.rec.Remote != client {
				t.Errorf("server record user %q auth %q remote %v, want dial %q %v", s.rec.User, s.rec.Auth, s.rec.Remote, tt.server, client)
			}
			if s.rec.Up.IsZero() || s.rec.PktsIn < 3 || s.rec.PktsOut < 3 {
				t.Errorf("server record up %v packets in %d out %d: want up and at least the 3 echoes each way", s.rec.Up, s.rec.PktsIn, s.rec.PktsOut)
			}
		})
	}
}

// testLog writes lines to the test log with a prefix.
type testLog struct {
	t      *testing.T
	prefix string
}

func (l testLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.t.Log(l.prefix + strings.TrimRight(line, "\r"))
	}
	return len(p), nil
}

// echoNet is the smallest IP side that lets a real ping succeed: it answers
// ICMP echo requests addressed to the gateway and drops everything else
// (the real NAT is netstack's and is tested there).
type echoNet struct {
	gateway, client netip.Addr
	echoes          atomic.Int64
}

func (n *echoNet) Attach(ctx context.Context, session string, want netip.Addr, deliver func(pkt []byte)) (ppp.NetLink, error) {
	l := &echoLink{n: n, deliver: deliver, out: make(chan []byte, 64), done: make(chan struct{})}
	l.wg.Add(1)
	go l.run()
	return l, nil
}

// echoLink replies from its own goroutine: deliver must not be called from
// inside Send, which runs on the session's owner goroutine.
type echoLink struct {
	n       *echoNet
	deliver func([]byte)
	out     chan []byte
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func (l *echoLink) Local() netip.Addr  { return l.n.gateway }
func (l *echoLink) Remote() netip.Addr { return l.n.client }
func (l *echoLink) DNS() []netip.Addr  { return nil }

func (l *echoLink) Send(pkt []byte) error {
	reply, err := echoReply(pkt, l.n.gateway)
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
	if checksum(pkt[:ihl]) != 0 || checksum(pkt[ihl:total]) != 0 {
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
	binary.BigEndian.PutUint16(r[10:12], checksum(r[:ihl]))
	ri := r[ihl:]
	ri[0] = 0 // echo reply
	ri[2], ri[3] = 0, 0
	binary.BigEndian.PutUint16(ri[2:4], checksum(ri))
	return r, nil
}

// checksum is the Internet checksum (RFC 1071); over data that carries its
// own correct checksum it returns 0.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
