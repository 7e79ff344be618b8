package ppp_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/ppp"
)

const pppClientsEnv = "ISPBOX_PPP_CLIENTS"

// TestPPPClientsHelper dials ISPBOX_PPP_CLIENTS="ADDR N" TCP connections
// and brings a PPP client up on each, then prints "up N" and holds them
// until stdin closes: the clients of TestIdleSessionMemory, in a process
// of their own so that their memory is not counted.
func TestPPPClientsHelper(t *testing.T) {
	spec := strings.Fields(os.Getenv(pppClientsEnv))
	if len(spec) != 2 {
		t.Skip("helper process of TestIdleSessionMemory (make bench-mem)")
	}
	n, _ := strconv.Atoi(spec[1])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	var clients []*ppp.Client
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", spec[0])
			if err != nil {
				t.Error(err)
				return
			}
			cl, err := ppp.Dial(ctx, c, ppp.ClientConfig{}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			clients = append(clients, cl)
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("up %d\n", len(clients))
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// TestIdleSessionMemory is make bench-mem's PPP half: ISPBOX_MEMBENCH
// lists session counts (1000,10000). N clients in a child process dial
// this process over loopback TCP and bring PPP up (LCP, IPCP; no
// authentication, as the seed's dial-in); the live heap and goroutine
// stacks this process gains, divided by N, is the memory of one idle
// server session (the network behind it is measured by netstack's
// BenchmarkSessionMemory). ISPBOX_MEMBENCH_PROFILE=DIR saves heap profiles.
func TestIdleSessionMemory(t *testing.T) {
	counts := testutil.MemBenchCounts(t)
	profDir := os.Getenv("ISPBOX_MEMBENCH_PROFILE")
	if profDir != "" {
		runtime.MemProfileRate = 512
	}
	fmt.Printf("| idle PPP sessions | KB per session (heap + stacks) | goroutines per session | all up in |\n|---|---|---|---|\n")
	for _, n := range counts {
		idleSessions(t, n, profDir)
	}
}

func idleSessions(t *testing.T, n int, profDir string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h0, s0, g0 := testutil.HeapNow()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		ln.Close()
		wg.Wait()
	}()
	netw := &discardNetwork{local: netip4(10, 0, 0, 1)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cfg := seedConfig()
			cfg.Remote = netip4(10, byte(1+i/62500), byte(i/250%250), byte(2+i%250))
			wg.Add(1)
			go func() {
				defer wg.Done()
				ppp.Serve(ctx, c, cfg, ppp.Options{Network: netw})
			}()
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPPPClientsHelper$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), pppClientsEnv+"="+ln.Addr().String()+" "+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	up := -1
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "up %d", &up); err == nil {
			break
		}
	}
	if up != n {
		t.Fatalf("%d of %d clients up", up, n)
	}
	took := time.Since(t0)
	time.Sleep(time.Second) // the last server sessions finish IPCP
	h1, s1, g1 := testutil.HeapNow()
	if profDir != "" {
		f, err := os.Create(filepath.Join(profDir, fmt.Sprintf("ppp-%d.pprof", n)))
		if err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	fmt.Printf("| %d | %.2f | %.2f | %v |\n", n, (float64(h1+s1)-float64(h0+s0))/1024/float64(n), float64(g1-g0)/float64(n), took.Round(time.Millisecond))
}

// discardNetwork is the least a network can be: an address per session
// and packets dropped. It keeps the network's own memory (netstack's,
// measured by its own benchmark; ppptest's 1,024-packet capture queue)
// out of the session's figure.
type discardNetwork struct{ local netip.Addr }

func (d *discardNetwork) Attach(_ context.Context, _ string, want netip.Addr, _ func([]byte)) (ppp.NetLink, error) {
	return discardLink{d.local, want}, nil
}

type discardLink struct{ local, remote netip.Addr }

func (l discardLink) Local() netip.Addr   { return l.local }
func (l discardLink) Remote() netip.Addr  { return l.remote }
func (discardLink) DNS() []netip.Addr     { return nil }
func (discardLink) Send(pkt []byte) error { return nil }
func (discardLink) Close() error          { return nil }
