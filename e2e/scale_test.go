package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/demo"
)

// ScaleEnv lists the bank sizes TestScale measures, e.g. "100,500,1000".
// Unset, TestScale skips: it is a measurement, not a CI test.
const scaleEnv = "ISPBOX_SCALE"

// TestScale dials N lines in at once through the virtual ATA (N ISP modem
// lines and N callers: 2N SIP user agents, 2N emulated modems, N PPP
// sessions with PAP) and reports:
//   - the time from the first ATDT until every PPP link is up;
//   - CPU (getrusage, the whole process) and memory (Go heap in use, RSS)
//     per line while the links are idle with LCP echoes every second, and
//     while every client pings the gateway once a second.
//
// Everything runs in this one process, so the numbers per line are the
// whole chain's: the box's share plus the emulated ATA, modems and PPP
// clients (no client IP stacks: the clients write ICMP by hand).
//
//	ISPBOX_SCALE=100,500 go test ./e2e -run TestScale -v -timeout 60m
func TestScale(t *testing.T) {
	spec := os.Getenv(scaleEnv)
	if spec == "" {
		t.Skipf("set %s=100,500,1000 to measure", scaleEnv)
	}
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a list of line counts", scaleEnv, spec)
		}
		t.Run(strconv.Itoa(n), func(t *testing.T) { runScale(t, n) })
	}
}

// phase is what one measured interval cost.
type phase struct {
	wall      time.Duration
	cpu       time.Duration // user + system
	heapInuse uint64
	rss       uint64
}

func runScale(t *testing.T, n int) {
	if free := freePTYs(t); free < 2*n+16 {
		t.Skipf("%d lines need %d ptys, %d free (/proc/sys/kernel/pty/max)", n, 2*n, free)
	}
	const (
		echoEvery = 1 // s: the box's lcp-echo-interval
		measure   = 15 * time.Second
	)
	b := bank{n: n, echo: echoEvery, pool: "10.64.0.0/16", gateway: "10.64.0.1", qualify: 2000}
	cfg := parse(t, fmt.Sprintf("scale%d.conf", n), b.config())

	base := sample()
	t0 := time.Now()
	w := startWorld(t, cfg, worldOpts{level: slog.LevelWarn})
	ready := time.Since(t0)
	// Registered and idle, no calls: the emulated modems' DTR polling,
	// the lines' idle state, qualify.
	registered := measureFor(measure)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	sess, errs, took := dialAll(ctx, w, b, demo.DialOptions{NoStack: true})
	allUp := time.Since(start)
	defer func() {
		var wg sync.WaitGroup
		for _, s := range sess {
			if s != nil {
				wg.Add(1)
				go func() { defer wg.Done(); s.HangUp(ctx) }()
			}
		}
		wg.Wait()
	}()
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			if failed <= 10 {
				t.Errorf("caller%d: %v", i+1, err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d dials failed", failed, n)
	}
	slices.Sort(took)
	if st := w.Box.Status(); len(st.Sessions) != n {
		t.Fatalf("box has %d sessions, want %d", len(st.Sessions), n)
	}

	// Idle: nothing but LCP echoes (the box asks every second, the
	// clients answer).
	idle := measureFor(measure)

	// Trickle: every client pings the gateway once a second.
	var sent, got atomic.Int64
	pctx, pcancel := context.WithCancel(ctx)
	var wg, pingers sync.WaitGroup
	for i, s := range sess {
		wg.Add(1)
		pingers.Add(1)
		go func() { defer wg.Done(); readEchoes(s, uint16(i), &got) }()
		go func() { defer pingers.Done(); pingEverySecond(pctx, s, uint16(i), &sent) }()
	}
	traffic := measureFor(measure)
	pcancel()
	pingers.Wait()
	// The last requests' replies are still on their way.
	for wait := time.Now(); got.Load() < sent.Load() && time.Since(wait) < 5*time.Second; {
		time.Sleep(20 * time.Millisecond)
	}
	// The readers end when the links close (HangUp below).

	hstart := time.Now()
	var hw sync.WaitGroup
	for _, s := range sess {
		hw.Add(1)
		go func() { defer hw.Done(); s.HangUp(ctx) }()
	}
	hw.Wait()
	sess = nil
	wg.Wait()
	if err := w.WaitLinesIdle(ctx); err != nil {
		t.Errorf("after hang-up: %v", err)
	}
	down := time.Since(hstart)

	per := func(v uint64, since uint64) float64 { return float64(int64(v)-int64(since)) / float64(n) / 1024 }
	cpuPct := func(p phase) float64 { return 100 * p.cpu.Seconds() / p.wall.Seconds() }
	t.Logf("SCALE n=%d: ready (registered, qualified, lines idle) %v; all %d links up %v after dialling at once (dial p50 %v p95 %v max %v); all torn down %v after hanging up",
		n, ready.Round(time.Millisecond), n, allUp.Round(time.Millisecond),
		took[len(took)/2].Round(time.Millisecond), took[len(took)*95/100].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond),
		down.Round(time.Millisecond))
	for _, p := range []struct {
		name string
		p    phase
	}{{"no calls", registered}, {"idle, LCP echo 1 s", idle}, {"1 ping/s per line", traffic}} {
		t.Logf("SCALE n=%d: %-18s CPU %.1f%% of one core (%.1f µs/s per line); heap %.0f KiB/line, RSS %.0f KiB/line (process RSS %.0f MiB)",
			n, p.name, cpuPct(p.p), float64(p.p.cpu.Microseconds())/p.p.wall.Seconds()/float64(n),
			per(p.p.heapInuse, base.heapInuse), per(p.p.rss, base.rss), float64(p.p.rss)/(1<<20))
	}
	t.Logf("SCALE n=%d: pings %d sent, %d answered (%.2f%% lost)", n, sent.Load(), got.Load(), 100*float64(sent.Load()-got.Load())/max(1, float64(sent.Load())))
	if got.Load() < sent.Load()*95/100 {
		t.Errorf("only %d of %d pings answered", got.Load(), sent.Load())
	}
}

// measureFor samples CPU over d, then the memory in use.
func measureFor(d time.Duration) phase {
	r0 := rusage()
	t0 := time.Now()
	time.Sleep(d) // the measurement interval itself
	p := sample()
	p.wall = time.Since(t0)
	p.cpu = rusage() - r0
	return p
}

func sample() phase {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return phase{heapInuse: ms.HeapInuse, rss: rssBytes()}
}

func rusage() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is VmRSS from /proc/self/status.
func rssBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func freePTYs(t *testing.T) int {
	read := func(p string) int {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("pty limits: %v", err)
		}
		v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return v
	}
	return read("/proc/sys/kernel/pty/max") - read("/proc/sys/kernel/pty/nr")
}

// pingEverySecond sends an ICMP echo request (RFC 792) to the gateway
// once a second over the PPP link, until ctx ends.
func pingEverySecond(ctx context.Context, s *demo.Session, id uint16, sent *atomic.Int64) {
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for seq := uint16(1); ; seq++ {
		if err := s.PPP.WritePacket(echoRequest(s.PPP.Local(), s.PPP.Remote(), id, seq)); err != nil {
			return
		}
		sent.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// readEchoes counts the echo replies with identifier id until the link
// closes.
func readEchoes(s *demo.Session, id uint16, got *atomic.Int64) {
	buf := make([]byte, 2048)
	for {
		n, err := s.PPP.ReadPacket(buf)
		if err != nil {
			return
		}
		p := buf[:n]
		if n < 28 || p[0]>>4 != 4 || p[9] != 1 {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if n < ihl+8 || p[ihl] != 0 || binary.BigEndian.Uint16(p[ihl+4:]) != id {
			continue
		}
		got.Add(1)
	}
}

// echoRequest builds an IPv4 ICMP echo request with 56 bytes of data, as
// ping(8) sends.
func echoRequest(src, dst netip.Addr, id, seq uint16) []byte {
	const hl, il = 20, 8 + 56
	p := make([]byte, hl+il)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], hl+il)
	binary.BigEndian.PutUint16(p[4:], seq) // IP id
	p[6] = 0x40                            // DF
	p[8], p[9] = 64, 1                     // TTL, ICMP
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:], s4[:])
	copy(p[16:], d4[:])
	binary.BigEndian.PutUint16(p[10:], inetChecksum(p[:hl]))
	icmp := p[hl:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	for i := 8; i < len(icmp); i++ {
		icmp[i] = byte(i)
	}
	binary.BigEndian.PutUint16(icmp[2:], inetChecksum(icmp))
	return p
}

// inetChecksum is the Internet checksum (RFC 1071).
func inetChecksum(b []byte) uint16 {
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
