package ppp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/ppp/ppptest"
)

var (
	gw     = netip.MustParseAddr("192.168.32.1")
	client = netip.MustParseAddr("192.168.32.105")
	dns    = netip.MustParseAddr("8.8.8.8")
	users  = []ppp.User{{Name: "dial", Server: "*", Secret: "dial", Addrs: []string{"*"}}}
)

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("PPP_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// seedConfig is the seed setup's pppd options with auth turned on.
func seedConfig(auth ...ppp.AuthProto) ppp.Config {
	cfg := ppp.DefaultConfig()
	cfg.DNS = []netip.Addr{dns}
	cfg.AsyncMap = 0
	if len(auth) > 0 {
		cfg.RequireAuth = true
		cfg.Auth = auth
	}
	return cfg
}

type served struct {
	rec ppp.Record
	err error
}

// startServer runs Serve on rw in a goroutine.
func startServer(t *testing.T, ctx context.Context, rw io.ReadWriteCloser, cfg ppp.Config, opts ppp.Options) <-chan served {
	ch := make(chan served, 1)
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	go func() {
		rec, err := ppp.Serve(ctx, rw, cfg, opts)
		ch <- served{rec, err}
	}()
	return ch
}

// dialUp runs a server session with cfg and opts on one end of an
// in-memory line and dials it with ccfg on the other; it returns once the
// client is up (a failed Dial ends the test). line is the client's end.
func dialUp(t *testing.T, ctx context.Context, cfg ppp.Config, opts ppp.Options, ccfg ppp.ClientConfig) (srv <-chan served, c *ppp.Client, line net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	srv = startServer(t, ctx, a, cfg, opts)
	c, err := ppp.Dial(t.Context(), b, ccfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	return srv, c, b
}

// udp builds an IPv4/UDP packet (checksum 0 is valid for UDP over IPv4).
func udp(src, dst netip.Addr, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], 1024)
	binary.BigEndian.PutUint16(p[22:], 53)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	return p
}

// exchange sends one packet each way and checks both arrive intact.
func exchange(t *testing.T, c *ppp.Client, link *ppptest.Link, up, down []byte) {
	t.Helper()
	if err := c.WritePacket(up); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-link.Sent:
		if !bytes.Equal(got, up) {
			t.Fatalf("network got % x, want % x", got, up)
		}
	case <-time.After(time.Minute):
		t.Fatal("packet from client never reached the network")
	}
	link.Deliver(down)
	buf := make([]byte, 2000)
	n, err := c.ReadPacket(buf)
	if err != nil || !bytes.Equal(buf[:n], down) {
		t.Fatalf("client got % x (%v), want % x", buf[:n], err, down)
	}
}

func TestAuthProtocols(t *testing.T) {
	for _, proto := range []ppp.AuthProto{ppp.AuthPAP, ppp.AuthCHAP, ppp.AuthMSCHAP, ppp.AuthMSCHAPv2} {
		t.Run(string(proto), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				netw := ppptest.NewNetwork("192.168.32.1", "192.168.32.105")
				b2 := bus.New(nil)
				sub := b2.Subscribe("test", 256, nil)
				defer sub.Close()
				reg := ppp.NewSessions()
				srv, c, _ := dialUp(t, t.Context(), seedConfig(proto), ppp.Options{Users: users, Network: netw, Line: "ttyUSB0", CallID: "00000002", Bus: b2, Registry: reg}, ppp.ClientConfig{User: "dial", Password: "dial", Auth: []ppp.AuthProto{proto}})
				if c.Local() != client || c.Remote() != gw || !slices.Equal(c.DNS(), []netip.Addr{dns, dns}) || c.AuthProto() != proto {
					t.Fatalf("local %s remote %s dns %v auth %s", c.Local(), c.Remote(), c.DNS(), c.AuthProto())
				}
				link, err := netw.Attached(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				exchange(t, c, link, udp(client, dns, "query"), udp(dns, client, "answer!"))
				if link.MTU() != 1500 {
					t.Errorf("MTU %d, want 1500", link.MTU())
				}
				synctest.Wait()
				list := reg.List()
				if len(list) != 1 || list[0].User != "dial" || list[0].Phase != "running" || list[0].Remote != client || list[0].Auth != string(proto) {
					t.Fatalf("sessions list %+v", list)
				}
				c.Close()
				res := <-srv
				if res.rec.Cause != ppp.CausePeer || res.rec.User != "dial" || res.rec.PktsIn != 1 || res.rec.PktsOut != 1 || res.rec.BytesIn != 33 {
					t.Fatalf("record %+v", res.rec)
				}
				if !link.Closed() || len(reg.List()) != 0 {
					t.Fatal("address or registry entry not released")
				}
				synctest.Wait()
				var kinds []string
				for len(sub.C()) > 0 {
					ev := <-sub.C()
					kinds = append(kinds, ev.Event.Kind())
					if up, ok := ev.Event.(bus.PPPUp); ok && (up.Remote != client || up.User != "dial" || up.CallID != "00000002") {
						t.Errorf("PPPUp %+v", up)
					}
				}
				if !slices.Contains(kinds, "ppp.up") || kinds[len(kinds)-1] != "ppp.down" {
					t.Errorf("events %v", kinds)
				}
				sub.Close()
			})
		})
	}
}

func TestWrongPassword(t *testing.T) {
	for _, proto := range []ppp.AuthProto{ppp.AuthPAP, ppp.AuthMSCHAPv2} {
		t.Run(string(proto), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				srv := startServer(t, t.Context(), a, seedConfig(proto), ppp.Options{Users: users, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
				start := time.Now()
				_, err := ppp.Dial(t.Context(), b, ppp.ClientConfig{User: "dial", Password: "guess"}, testLog(t))
				if !errors.Is(err, ppp.ErrAuthFailed) {
					t.Fatalf("Dial: %v", err)
				}
				// The failure is answered after AuthFailDelay (1 s).
				if d := time.Since(start); d < time.Second {
					t.Errorf("failure answered after %s", d)
				}
				if res := <-srv; res.rec.Cause != ppp.CauseAuth || res.rec.User != "" {
					t.Fatalf("record %+v", res.rec)
				}
			})
		})
	}
}

func TestNoAuthLoggedInUser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := seedConfig() // noauth, as options.ttyUSB0
		cfg.Remote = client
		netw := ppptest.NewNetwork("192.168.32.1", "192.168.32.105", "192.168.32.106")
		srv, c, _ := dialUp(t, t.Context(), cfg, ppp.Options{Network: netw, LoggedInUser: "dial"}, ppp.ClientConfig{})
		if c.AuthProto() != "" || c.Local() != client {
			t.Fatalf("auth %q local %s", c.AuthProto(), c.Local())
		}
		c.Close()
		if res := <-srv; res.rec.User != "dial" || res.rec.Remote != client {
			t.Fatalf("record %+v", res.rec)
		}
	})
}

// blackhole is a line that can be cut silently: writes vanish and reads
// block, as when the client's modem dies without dropping carrier.
type blackhole struct {
	io.ReadWriteCloser
	mu  sync.Mutex
	cut bool
}

func (b *blackhole) Write(p []byte) (int, error) {
	b.mu.Lock()
	cut := b.cut
	b.mu.Unlock()
	if cut {
		return len(p), nil
	}
	return b.ReadWriteCloser.Write(p)
}

func TestEchoFailureEndsSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		cfg := seedConfig(ppp.AuthPAP)
		cfg.EchoInterval = 30 * time.Second
		cfg.EchoFailure = 4
		srv := startServer(t, t.Context(), a, cfg, ppp.Options{Users: users, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
		line := &blackhole{ReadWriteCloser: b}
		c, err := ppp.Dial(t.Context(), line, ppp.ClientConfig{User: "dial", Password: "dial"}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		// Echoes are answered while the client is alive.
		time.Sleep(5 * time.Minute)
		select {
		case res := <-srv:
			t.Fatalf("session ended while the peer answered: %+v", res.rec)
		default:
		}
		line.mu.Lock()
		line.cut = true
		line.mu.Unlock()
		cut := time.Now()
		res := <-srv
		if res.rec.Cause != ppp.CauseEcho {
			t.Fatalf("cause %q", res.rec.Cause)
		}
		// 4 unanswered echoes at 30 s, the check on the 5th tick, then
		// Max-Terminate (2) × 3 s of Terminate-Requests.
		if d := time.Since(cut); d < 2*time.Minute || d > 3*time.Minute {
			t.Errorf("ended %s after the peer died", d)
		}
		<-c.Done()
	})
}

func TestIdleAndMaxConnect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(*ppp.Config)
		cause string
		after time.Duration
	}{
		{"idle", func(c *ppp.Config) { c.Idle = 10 * time.Minute }, ppp.CauseIdle, 10 * time.Minute},
		{"maxconnect", func(c *ppp.Config) { c.MaxConnect = time.Hour }, ppp.CauseMaxConnect, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := seedConfig()
				tc.set(&cfg)
				srv, c, _ := dialUp(t, t.Context(), cfg, ppp.Options{Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")}, ppp.ClientConfig{})
				up := time.Now()
				res := <-srv
				if res.rec.Cause != tc.cause {
					t.Fatalf("cause %q", res.rec.Cause)
				}
				if d := time.Since(up); d < tc.after || d > tc.after+10*time.Second {
					t.Errorf("ended after %s, want %s", d, tc.after)
				}
				if c.Cause() != ppp.CausePeer {
					t.Errorf("client cause %q", c.Cause())
				}
			})
		})
	}
}

func TestShutdownSendsTerminate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		srv, c, _ := dialUp(t, ctx, seedConfig(), ppp.Options{Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")}, ppp.ClientConfig{})
		cancel()
		if res := <-srv; res.rec.Cause != ppp.CauseShutdown {
			t.Fatalf("cause %q", res.rec.Cause)
		}
		if c.Cause() != ppp.CausePeer {
			t.Fatalf("client saw %q", c.Cause())
		}
	})
}

func TestCarrierLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, c, b := dialUp(t, t.Context(), seedConfig(), ppp.Options{Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")}, ppp.ClientConfig{})
		b.Close() // the modem hung up under us
		if res := <-srv; res.rec.Cause != ppp.CauseCarrier {
			t.Fatalf("cause %q", res.rec.Cause)
		}
		<-c.Done()
	})
}

func TestWindowsClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := seedConfig(ppp.AuthPAP, ppp.AuthMSCHAP)
		netw := ppptest.NewNetwork("192.168.32.1", "192.168.32.105")
		// "Require encrypted password": the client Naks PAP with MS-CHAP.
		srv, c, _ := dialUp(t, t.Context(), cfg, ppp.Options{Users: users, Network: netw}, ppp.ClientConfig{User: "dial", Password: "dial", Windows: true, WantVJ: true,
			Auth: []ppp.AuthProto{ppp.AuthMSCHAP, ppp.AuthCHAP}})
		if c.AuthProto() != ppp.AuthMSCHAP {
			t.Errorf("auth %s, want mschap after the client's Nak", c.AuthProto())
		}
		if !slices.Equal(c.DNS(), []netip.Addr{dns, dns}) || len(c.WINS()) != 0 {
			t.Errorf("dns %v wins %v (ms-wins unset must be Rejected)", c.DNS(), c.WINS())
		}
		if tx, rx := c.VJ(); !tx || !rx {
			t.Errorf("VJ tx %v rx %v", tx, rx)
		}
		// VJ with Comp-Slot-Id 0: every compressed packet names its slot.
		link, _ := netw.Attached(t.Context())
		for i := range 10 {
			exchange(t, c, link, tcpPacket(client, dns, 1025, 80, 1, uint32(1+512*i), 0x10, uint16(i), nil),
				tcpPacket(dns, client, 80, 1025, uint32(1+512*i), 1, 0x18, uint16(i), make([]byte, 512)))
		}
		synctest.Wait()
		rej := c.ProtocolRejects()
		for _, p := range []uint16{0x802b, 0x803f, 0x80fd} {
			if !slices.Contains(rej, p) {
				t.Errorf("protocol %#04x not rejected (rejects %x)", p, rej)
			}
		}
		c.Close()
		<-srv
	})
}

func TestVJ(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server bool
		client bool
		wantTx bool
	}{
		{"both", true, true, true},
		{"server novj", false, true, false},
		{"client novj", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := seedConfig()
				cfg.VJ = tc.server
				netw := ppptest.NewNetwork("192.168.32.1", "192.168.32.105")
				srv, c, _ := dialUp(t, t.Context(), cfg, ppp.Options{Network: netw}, ppp.ClientConfig{WantVJ: tc.client})
				if tx, rx := c.VJ(); tx != tc.wantTx || rx != tc.wantTx {
					t.Fatalf("VJ tx %v rx %v, want %v", tx, rx, tc.wantTx)
				}
				link, _ := netw.Attached(t.Context())
				// A download: the server side sends a TCP stream, the client acks.
				seq, ack := uint32(1000), uint32(5000)
				for i := range 30 {
					data := bytes.Repeat([]byte{byte(i)}, 512)
					down := tcpPacket(dns, client, 80, 1025, seq, ack, 0x18, uint16(100+i), data)
					upAck := tcpPacket(client, dns, 1025, 80, ack, seq+512, 0x10, uint16(7000+i), nil)
					exchange(t, c, link, upAck, down)
					seq += 512
				}
				c.Close()
				res := <-srv
				if res.rec.PktsIn != 30 || res.rec.PktsOut != 30 {
					t.Fatalf("record %+v", res.rec)
				}
			})
		})
	}
}

// tcpPacket builds an IPv4/TCP packet with valid checksums.
func tcpPacket(src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags byte, id uint16, data []byte) []byte {
	p := make([]byte, 40+len(data))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	p[6] = 0x40
	p[8], p[9] = 64, 6
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:20], 0))
	th := p[20:]
	binary.BigEndian.PutUint16(th[0:], sport)
	binary.BigEndian.PutUint16(th[2:], dport)
	binary.BigEndian.PutUint32(th[4:], seq)
	binary.BigEndian.PutUint32(th[8:], ack)
	th[12], th[13] = 5<<4, flags
	binary.BigEndian.PutUint16(th[14:], 8760)
	copy(th[20:], data)
	pseudo := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFrom4(s), tcpip.AddrFrom4(d), uint16(len(th)))
	binary.BigEndian.PutUint16(th[16:], ^checksum.Checksum(th, pseudo))
	return p
}

func TestLossyReorderingLine(t *testing.T) {
	for seed := range uint64(16) {
		for _, proto := range []ppp.AuthProto{"", ppp.AuthPAP} {
			synctest.Test(t, func(t *testing.T) {
				a, b := ppptest.Pipe(0.1, 0.1, seed)
				cfg := seedConfig()
				if proto != "" {
					cfg = seedConfig(proto)
				}
				srv := startServer(t, t.Context(), a, cfg, ppp.Options{Users: users, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
				c, err := ppp.Dial(t.Context(), b, ppp.ClientConfig{User: "dial", Password: "dial", WantVJ: true}, testLog(t))
				if err != nil {
					t.Fatalf("seed %d auth %q: %v", seed, proto, err)
				}
				if c.Local() != client {
					t.Fatalf("local %s", c.Local())
				}
				c.Close()
				<-srv
			})
		}
	}
}

func netip4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

// ms-wins set: the Windows client's 130/132 are Nak'd with it (one value
// fills both, as pppd), and two ms-dns values go to 129 and 131 in order.
func TestWindowsClientWINS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := seedConfig()
		dns2 := netip.MustParseAddr("1.1.1.1")
		wins := netip.MustParseAddr("192.168.32.10")
		cfg.DNS = []netip.Addr{dns, dns2}
		cfg.WINS = []netip.Addr{wins}
		srv, c, _ := dialUp(t, t.Context(), cfg, ppp.Options{Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")}, ppp.ClientConfig{Windows: true})
		if !slices.Equal(c.DNS(), []netip.Addr{dns, dns2}) || !slices.Equal(c.WINS(), []netip.Addr{wins, wins}) {
			t.Errorf("dns %v wins %v", c.DNS(), c.WINS())
		}
		c.Close()
		<-srv
	})
}

// TestDownCarriesLineErrors: a session's PPPDown carries the record's
// FCS-error and dropped-packet counts, so the metrics' totals keep them
// once the session is gone.
func TestDownCarriesLineErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		events := bus.New(nil)
		sub := events.Subscribe("test", 256, nil)
		defer sub.Close()
		srv, c, b := dialUp(t, t.Context(), seedConfig(), ppp.Options{Users: users, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105"), Bus: events}, ppp.ClientConfig{User: "dial", Password: "dial"})
		// Two LCP frames whose FCS line noise spoilt (control characters
		// escaped, RFC 1662 §4.2).
		noise := []byte{0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21, 0x7d, 0x29, 0x7d, 0x21, 0x7d, 0x20, 0x7d, 0x28, 0, 0, 0, 0, 0x12, 0x34, 0x7e}
		for range 2 {
			if _, err := b.Write(noise); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		c.Close()
		res := <-srv
		if res.rec.FCSErrors != 2 {
			t.Errorf("record: %d FCS errors, want 2", res.rec.FCSErrors)
		}
		synctest.Wait()
		var down *bus.PPPDown
		for len(sub.C()) > 0 {
			if d, ok := (<-sub.C()).Event.(bus.PPPDown); ok {
				down = &d
			}
		}
		if down == nil {
			t.Fatal("no ppp.down")
		}
		if down.FCSErrors != res.rec.FCSErrors || down.Dropped != res.rec.Dropped {
			t.Errorf("ppp.down: %d FCS errors, %d dropped; the record: %d, %d", down.FCSErrors, down.Dropped, res.rec.FCSErrors, res.rec.Dropped)
		}
	})
}
