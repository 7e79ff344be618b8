package pbx

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/sim/sipflood"
	"github.com/isp-box/isp-box/internal/testutil"
)

// TestMemoryPerPeer is make bench-mem's SIP half: ISPBOX_MEMBENCH lists
// peer counts (1000,10000). For each, a PBX with that many peers
// (qualify=yes, as the seed's lines) is started in this process, every
// peer registers with digest from 64 gateway sockets that answer the
// box's OPTIONS like an ATA, and the live heap and stacks are read:
// with the peers only configured, right after the registrations, and
// once sipgo's server transactions are gone (Timer J, 32 s:
// ISPBOX_MEMBENCH_SETTLE). ISPBOX_MEMBENCH_PROFILE=DIR saves heap
// profiles at each point (go tool pprof -base).
func TestMemoryPerPeer(t *testing.T) {
	counts := testutil.MemBenchCounts(t)
	settle := 33 * time.Second
	if d, err := time.ParseDuration(os.Getenv("ISPBOX_MEMBENCH_SETTLE")); err == nil {
		settle = d
	}
	profDir := os.Getenv("ISPBOX_MEMBENCH_PROFILE")
	if profDir != "" {
		runtime.MemProfileRate = 512
	}
	profile := func(name string) {
		if profDir == "" {
			return
		}
		f, err := os.Create(filepath.Join(profDir, name+".pprof"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("| peers | heap+stacks, empty box KB | configured: KB per peer | registering adds, KB per peer | of which left after %v | goroutines per peer | register time |\n|---|---|---|---|---|---|---|\n", settle)
	for _, n := range counts {
		memoryPerPeer(t, n, settle, profile)
	}
}

func memoryPerPeer(t *testing.T, n int, settle time.Duration, profile func(string)) {
	name := func(i int) string { return fmt.Sprintf("line%05d", i) }
	start := func(peers int) (*Server, context.CancelFunc, chan error) {
		cfg := DefaultConfig()
		cfg.General.UDPBindAddr = netip.MustParseAddrPort("127.0.0.1:0")
		for i := range peers {
			p := DefaultPeer(name(i))
			p.Secret, p.Host, p.NAT, p.Qualify = secret, "dynamic", "no", 2000
			p.File, p.Line = "sip.conf", 1+i
			cfg.Peers = append(cfg.Peers, p)
		}
		s, err := New(cfg, Options{Bus: bus.New(nil)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		select {
		case <-s.Ready():
		case err := <-done:
			t.Fatalf("Run: %v", err)
		}
		return s, cancel, done
	}
	stop := func(cancel context.CancelFunc, done chan error) {
		cancel()
		<-done
	}

	// An empty box first: what a box costs without peers.
	h0, s0, _ := testutil.HeapNow()
	_, cancel0, done0 := start(0)
	he, se, ge := testutil.HeapNow()
	stop(cancel0, done0)
	empty := he + se - h0 - s0

	h0, s0, _ = testutil.HeapNow()
	s, cancel, done := start(n)
	defer stop(cancel, done)
	hc, sc, _ := testutil.HeapNow() // configured: minus the empty box, per peer
	profile(fmt.Sprintf("peers-%d-configured", n))
	// 64 gateways on distinct loopback addresses (the stranger limits
	// are per source address until a line of that address registers),
	// made before the next reading so that their sockets, buffers and
	// goroutines are not counted.
	const gateways = 64
	uas := make([]*sipflood.UA, gateways)
	for k := range uas {
		ua, err := sipflood.NewUA(s.Addr(), netip.AddrFrom4([4]byte{127, 11, byte(k / 250), byte(1 + k%250)}), name(k), secret)
		if err != nil {
			t.Fatal(err)
		}
		defer ua.Close()
		uas[k] = ua
	}
	hb, sb, gb := testutil.HeapNow() // the baseline of what registration adds
	ctx, cancelReg := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancelReg()
	t0 := time.Now()
	failed, first := sipflood.RegisterAll(ctx, uas, n, name, secret, 3600)
	regTime := time.Since(t0)
	if failed > 0 {
		t.Fatalf("%d of %d registrations failed, first: %v", failed, n, first)
	}
	registered := 0
	for _, pi := range s.Peers() {
		if pi.Host.IsValid() {
			registered++
		}
	}
	if registered != n {
		t.Fatalf("%d of %d peers registered", registered, n)
	}
	hr, sr, gr := testutil.HeapNow()
	profile(fmt.Sprintf("peers-%d-registered", n))
	time.Sleep(settle)
	hi, si, gi := testutil.HeapNow()
	profile(fmt.Sprintf("peers-%d-idle", n))
	kb := func(a, b uint64) float64 { return (float64(a) - float64(b)) / 1024 / float64(n) }
	fmt.Printf("| %d | %.0f | %.2f | +%.2f | +%.2f | %.3f | %v |\n", n, float64(empty)/1024,
		kb(hc+sc, h0+s0+empty), kb(hr+sr, hb+sb), kb(hi+si, hb+sb), float64(gi-gb)/float64(n), regTime.Round(time.Millisecond))
	t.Logf("goroutines: empty box %d, with the gateways %d, registered %d, idle %d", ge, gb, gr, gi)
}
