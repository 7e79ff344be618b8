package netstack_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/isp-box/isp-box/netstack/clientnet"
)

// cpuMeter measures process CPU time (user+system, getrusage) over a
// benchmark, to report CPU cost per megabit moved.
type cpuMeter struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuMeter { return cpuMeter{start: cpuNow()} }

// report adds cpu-µs/Mbit: CPU microseconds (all of the process: client
// stack, box and server) per megabit carried.
func (m cpuMeter) report(b *testing.B, bytes int64) {
	cpu := cpuNow() - m.start
	if bytes > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/(float64(bytes)*8/1e6), "cpu-µs/Mbit")
	}
}

// bulkServer is a TCP server that sends zeros forever on each connection.
func bulkServer(tb testing.TB, l net.Listener) {
	go func() {
		buf := make([]byte, 64<<10)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
}

const chunk = 1 << 20

func benchBulk(b *testing.B, dial func(ctx context.Context) (net.Conn, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	// Warm up the congestion window before timing.
	if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, 4*chunk), buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(chunk)
	b.ResetTimer()
	m := startCPU()
	for i := 0; i < b.N; i++ {
		if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, chunk), buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m.report(b, int64(b.N)*chunk)
}

func udpRTT(b *testing.B, c net.Conn) {
	msg := make([]byte, 64)
	buf := make([]byte, 1500)
	b.ResetTimer()
	m := startCPU()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m.report(b, int64(b.N)*2*int64(len(msg)))
}

// BenchmarkDirectTCP is the baseline: the same bulk transfer over host
// loopback without the box.
func BenchmarkDirectTCP(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	bulkServer(b, l)
	benchBulk(b, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", l.Addr().String())
	})
}

// BenchmarkUserspaceTCP: a client stack downloads from a server on host
// loopback through the userspace box (gVisor on both sides + host sockets).
func BenchmarkUserspaceTCP(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	bulkServer(b, l)
	st := newStack(b, userspaceConfig(b), nil)
	_, c := attach(b, st, "bench", netip.Addr{})
	port := netip.MustParseAddrPort(l.Addr().String()).Port()
	benchBulk(b, func(ctx context.Context) (net.Conn, error) {
		return c.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", gw, port))
	})
}

func BenchmarkDirectUDPRTT(b *testing.B) {
	echo, _ := udpEcho(b)
	c, err := net.Dial("udp", echo.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	udpRTT(b, c)
}

// BenchmarkUserspaceUDPRTT: round trip of a 64-byte datagram from a client
// stack through the box to a UDP echo server on host loopback. Subtract
// BenchmarkDirectUDPRTT for the added latency.
func BenchmarkUserspaceUDPRTT(b *testing.B) {
	echo, _ := udpEcho(b)
	st := newStack(b, userspaceConfig(b), nil)
	_, cl := attach(b, st, "bench", netip.Addr{})
	c, err := cl.DialContext(context.Background(), "udp", fmt.Sprintf("%s:%d", gw, echo.Port()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	udpRTT(b, c)
}

// BenchmarkUserspacePingGateway: ICMP echo answered by the box's stack.
func BenchmarkUserspacePingGateway(b *testing.B) {
	st := newStack(b, userspaceConfig(b), nil)
	_, cl := attach(b, st, "bench", netip.Addr{})
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cl.Ping(ctx, gw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientStackOnlyTCP isolates the test client's own cost: two
// client stacks back to back, no box. The box benchmarks include this.
func BenchmarkClientStackOnlyTCP(b *testing.B) {
	a, bb, err := clientnet.Pair(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1500)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	defer bb.Close()
	l, err := bb.ListenTCP(netip.MustParseAddrPort("10.0.0.2:80"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	bulkServer(b, l)
	benchBulk(b, func(ctx context.Context) (net.Conn, error) { return a.DialContext(ctx, "tcp", "10.0.0.2:80") })
}
