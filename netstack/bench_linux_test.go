package netstack_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/isp-box/isp-box/internal/testutil"
)

// BenchmarkKernelTCP: a client stack downloads from a server in another
// network namespace through the kernel-mode box (TUN, forwarding,
// masquerade, MSS clamp).
func BenchmarkKernelTCP(b *testing.B) {
	tp := newTopo(b)
	l, _ := tp.listen(b, "tcp", serverAddr+":8000")
	bulkServer(b, l)
	cfg := kernelConfig()
	cfg.MTU = 1500
	st := tp.stack(b, cfg)
	_, c := attach(b, st, "bench", netip.Addr{})
	benchBulk(b, func(ctx context.Context) (net.Conn, error) {
		return c.DialContext(ctx, "tcp", serverAddr+":8000")
	})
}

// BenchmarkKernelDirectTCP is the baseline: host sockets from the box
// namespace to the server over the veth, no TUN, no client stack.
func BenchmarkKernelDirectTCP(b *testing.B) {
	tp := newTopo(b)
	l, _ := tp.listen(b, "tcp", serverAddr+":8000")
	bulkServer(b, l)
	var c net.Conn
	var err error
	inNS(b, tp.boxNS, func() { c, err = net.Dial("tcp", serverAddr+":8000") })
	if err != nil {
		b.Fatal(err)
	}
	benchBulk(b, func(context.Context) (net.Conn, error) { return c, nil })
}

func kernelEcho(b *testing.B, tp *topo) {
	_, pc := tp.listen(b, "udp", serverAddr+":7")
	testutil.ServePackets(pc, testutil.Echo)
}

// BenchmarkKernelUDPRTT: 64-byte UDP round trip from a client stack through
// the kernel-mode box to an echo server in the server namespace.
func BenchmarkKernelUDPRTT(b *testing.B) {
	tp := newTopo(b)
	kernelEcho(b, tp)
	st := tp.stack(b, kernelConfig())
	_, cl := attach(b, st, "bench", netip.Addr{})
	c, err := cl.DialContext(context.Background(), "udp", serverAddr+":7")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	udpRTT(b, c)
}

// BenchmarkKernelDirectUDPRTT is the baseline for BenchmarkKernelUDPRTT: a
// host socket in the box namespace, straight over the veth.
func BenchmarkKernelDirectUDPRTT(b *testing.B) {
	tp := newTopo(b)
	kernelEcho(b, tp)
	var c net.Conn
	var err error
	inNS(b, tp.boxNS, func() { c, err = net.Dial("udp", serverAddr+":7") })
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	udpRTT(b, c)
}
