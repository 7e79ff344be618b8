package netstack_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/netstack"
)

// TestSessionMemory is make bench-mem's network half: ISPBOX_MEMBENCH
// lists session counts (1000,10000); that many sessions are attached to
// a userspace stack (the default mode) and left idle. The live heap and
// stacks gained, divided by N, is the network's share of one idle PPP
// session (ppp's TestIdleSessionMemory has the session's own).
func TestSessionMemory(t *testing.T) {
	counts := testutil.MemBenchCounts(t)
	fmt.Printf("| attached sessions (userspace) | KB per session (heap + stacks) | goroutines per session |\n|---|---|---|\n")
	for _, n := range counts {
		cfg := userspaceConfig(t)
		cfg.Pool = netip.MustParsePrefix("10.64.0.0/10")
		cfg.Gateway = netip.MustParseAddr("10.64.0.1")
		st, err := netstack.New(context.Background(), cfg, netstack.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h0, s0, g0 := testutil.HeapNow()
		sessions := make([]*netstack.Session, 0, n)
		for i := range n {
			s, err := st.Attach(context.Background(), "s"+strconv.Itoa(i), netip.Addr{}, func([]byte) {})
			if err != nil {
				t.Fatal(err)
			}
			sessions = append(sessions, s)
		}
		h1, s1, g1 := testutil.HeapNow()
		fmt.Printf("| %d | %.2f | %.2f |\n", n, (float64(h1+s1)-float64(h0+s0))/1024/float64(n), float64(g1-g0)/float64(n))
		for _, s := range sessions {
			s.Close()
		}
		st.Close()
	}
}
