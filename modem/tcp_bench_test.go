package modem

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"
)

// BenchmarkTCPIdleConnMemory measures what one idle connection on a TCP
// line costs: 200 clients connect and wait at the login prompt; the heap
// and goroutines added per connection are reported (bytes/conn,
// goroutines/conn). Run with `make bench-lines`.
func BenchmarkTCPIdleConnMemory(b *testing.B) {
	const n = 200
	for i := 0; i < b.N; i++ {
		r := newTCPRigB(b)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for j := 0; j < n; j++ {
			c, err := net.Dial("tcp", r.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		buf := make([]byte, 256)
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Read(buf); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse)/n, "bytes/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}

func newTCPRigB(b *testing.B) *TCPLine {
	cfg := DefaultLineConfig("tcp0")
	cfg.Kind = KindTCP
	cfg.Listen = "127.0.0.1:0"
	cfg.MaxConns = 1000
	tl, err := NewTCPLine(cfg, LineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tl.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for tl.Addr() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	return tl
}
