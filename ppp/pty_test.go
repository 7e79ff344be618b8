package ppp_test

import (
	"context"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/ppp/ppptest"
)

// openRawPty returns a pty pair with the terminal side in raw mode (as
// pppd and mgetty set a serial port): no echo, no CR/LF mapping, 8 bits.
func openRawPty(tb testing.TB) (master, tty *os.File) {
	tb.Helper()
	m, t, err := pty.Open()
	if err != nil {
		tb.Skipf("no pty: %v", err)
	}
	tio, err := unix.IoctlGetTermios(int(t.Fd()), unix.TCGETS)
	if err != nil {
		tb.Fatal(err)
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(int(t.Fd()), unix.TCSETS, tio); err != nil {
		tb.Fatal(err)
	}
	// Fd() left both files in blocking mode, where Close cannot interrupt a
	// Read. Serial ports (go.bug.st/serial) can be interrupted; make these
	// pollable the same way.
	return pollable(tb, m), pollable(tb, t)
}

func pollable(tb testing.TB, f *os.File) *os.File {
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		tb.Fatal(err)
	}
	f.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		tb.Fatal(err)
	}
	return os.NewFile(uintptr(fd), f.Name())
}

// TestOverPty runs client and server over a real pty, as the box runs over
// a serial port, with each CHAP flavour and PAP.
func TestOverPty(t *testing.T) {
	for _, proto := range []ppp.AuthProto{ppp.AuthPAP, ppp.AuthCHAP, ppp.AuthMSCHAP, ppp.AuthMSCHAPv2} {
		t.Run(string(proto), func(t *testing.T) {
			m, tty := openRawPty(t)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cfg := seedConfig(proto)
			cfg.EchoInterval = time.Second // echoes must not disturb anything
			cfg.EchoFailure = 4
			netw := ppptest.NewNetwork("192.168.32.1", "192.168.32.105")
			srv := startServer(t, ctx, m, cfg, ppp.Options{Users: users, Network: netw, Line: "pty"})
			c, err := ppp.Dial(ctx, tty, ppp.ClientConfig{User: "dial", Password: "dial", WantVJ: true}, testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			if c.Local() != client || c.AuthProto() != proto {
				t.Fatalf("local %s auth %s", c.Local(), c.AuthProto())
			}
			link, err := netw.Attached(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				exchange(t, c, link, tcpPacket(client, dns, 1025, 80, 1, uint32(1+i), 0x10, uint16(i), nil),
					tcpPacket(dns, client, 80, 1025, uint32(1+i), 1, 0x18, uint16(i), make([]byte, 1400)))
			}
			c.Close()
			res := <-srv
			if res.rec.Cause != ppp.CausePeer && res.rec.Cause != ppp.CauseCarrier {
				t.Fatalf("cause %q", res.rec.Cause)
			}
			if res.rec.FCSErrors != 0 {
				t.Errorf("%d FCS errors on a clean pty", res.rec.FCSErrors)
			}
		})
	}
}

// BenchmarkNegotiatePty measures CONNECT→IP-up: from the first octet on a
// fresh pty to IPCP opened on both sides, with MS-CHAPv2.
func BenchmarkNegotiatePty(b *testing.B) {
	cfg := seedConfig(ppp.AuthMSCHAPv2)
	for b.Loop() {
		m, tty := openRawPty(b)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			ppp.Serve(ctx, m, cfg, ppp.Options{Users: users, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
			close(done)
		}()
		c, err := ppp.Dial(ctx, tty, ppp.ClientConfig{User: "dial", Password: "dial", WantVJ: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cancel()
		<-c.Done()
		<-done
		b.StartTimer()
	}
}

// BenchmarkIdleSessionMemory reports the heap and stack held by one idle
// server session (with its client), IPCP up, over net.Pipe.
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 100
	for b.Loop() {
		b.StopTimer()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ctx, cancel := context.WithCancel(context.Background())
		var clients []*ppp.Client
		done := make(chan struct{}, n)
		netw := ppptest.NewNetwork("10.0.0.1")
		for i := range n {
			a, c := net.Pipe()
			cfg := seedConfig()
			cfg.Remote = netip4(10, 0, byte(i/250), byte(2+i%250))
			go func() {
				ppp.Serve(ctx, a, cfg, ppp.Options{Network: netw})
				done <- struct{}{}
			}()
			cl, err := ppp.Dial(ctx, c, ppp.ClientConfig{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			clients = append(clients, cl)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per := float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse) / n
		b.ReportMetric(per, "B/session-pair")
		cancel()
		for range n {
			<-done
		}
		for _, cl := range clients {
			<-cl.Done()
		}
		b.StartTimer()
	}
}
