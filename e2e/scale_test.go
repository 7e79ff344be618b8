package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/hayes"
	"github.com/isp-box/isp-box/internal/testutil"
)

// scaleEnv lists the bank sizes TestScale measures, e.g. "100,500,1000".
// Unset, TestScale skips: it is a measurement, not a CI test.
const scaleEnv = "ISPBOX_SCALE"

// TestScale dials N lines in at once through the virtual ATA and measures
// what the box costs per line. The box is the real binary (`isp-box serve`,
// built from ./cmd/isp-box, or $ISPBOX_BIN) in its own process with a
// generated config: N SIP peers for the ISP modems' ATA ports and N for
// the callers', N modem lines (mgetty keys, rings 1) on the ptys of N
// emulated ISP modems, PPP with PAP and lcp-echo-interval 1. This test
// process is the rest of the world: the virtual ATA (2N SIP user agents),
// the 2N emulated modems and N PPP clients (no client IP stacks: the
// clients write ICMP by hand).
//
// It reports the time from the first ATDT until every PPP link is up, and
// the box process's CPU (utime+stime from /proc) and RSS per line with no
// calls, idle with LCP echoes every second, and with every client pinging
// the gateway once a second; the emulators' own CPU and memory beside it.
//
// Known problem (pbx): with hundreds of lines starting at once the PBX's
// lossy LineState subscription misses some lines' "idle" and answers
// their callers 486 for good; checkLineBusy names them and the
// measurement goes on with the links that came up.
//
//	ISPBOX_SCALE=100,500,1000 go test ./e2e -run '^TestScale$' -v -count=1 -timeout 60m
func TestScale(t *testing.T) {
	sizes := testutil.CountsOrSkip(t, scaleEnv, "set "+scaleEnv+"=100,500,1000 (line counts) to measure")
	bin := boxBinary(t)
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) { runScale(t, bin, n) })
	}
}

// phase is what one measured interval cost: the box process's and this
// process's (the emulators').
type phase struct {
	wall           time.Duration
	boxCPU, emuCPU time.Duration // user + system
	boxRSS, emuRSS uint64
	emuHeap        uint64
}

func runScale(t *testing.T, bin string, n int) {
	if free := freePTYs(t); free < 2*n+16 {
		t.Skipf("%d lines need %d ptys, %d free (/proc/sys/kernel/pty/max)", n, 2*n, free)
	}
	const measure = 15 * time.Second
	checkGoroutines(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()

	base := sample(0)
	// The ISP side's modems first: the box opens their ptys.
	isp := make([]*hayes.Modem, n)
	for i := range isp {
		m, err := hayes.New(hayes.Options{Link: filepath.Join(dir, fmt.Sprintf("tty-ttyS%d", i+1)), RingInterval: ringInterval, Name: fmt.Sprintf("ttyS%d", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		isp[i] = m
		t.Cleanup(func() { m.Close() })
	}
	sip := freeUDP(t)
	b := bank{n: n, echo: 1, pool: "10.64.0.0/16", gateway: "10.64.0.1", qualify: 2000, devices: dir, sip: sip.String()}
	conf := filepath.Join(dir, "isp-box.conf")
	if err := os.WriteFile(conf, []byte(b.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	bx := startBox(t, bin, conf, dir)
	if err := bx.waitLines(ctx, n, "idle", 0); err != nil {
		t.Fatal(err)
	}
	linesUp := time.Since(t0)

	// The ATA: port 2i-1 holds ISP modem i, port 2i caller i's modem.
	var lines []ata.LineConfig
	for i := 1; i <= n; i++ {
		lines = append(lines,
			ata.LineConfig{Name: fmt.Sprintf("modem%d", i), User: fmt.Sprintf("modem%d", i), Password: fmt.Sprintf("m%d", i), Registrar: sip},
			ata.LineConfig{Name: fmt.Sprintf("caller%d", i), User: fmt.Sprintf("caller%d", i), Password: fmt.Sprintf("c%d", i), Registrar: sip})
	}
	a, err := ata.New(ata.Options{Lines: lines})
	if err != nil {
		t.Fatal(err)
	}
	callers := make([]*hayes.Modem, n)
	for i := range n {
		a.Line(2 * i).Plug(isp[i])
		m, err := hayes.New(hayes.Options{Link: filepath.Join(dir, fmt.Sprintf("caller%d", i+1)), Phone: a.Line(2*i + 1), RingInterval: ringInterval, Name: fmt.Sprintf("caller%d", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		a.Line(2*i + 1).Plug(m)
		callers[i] = m
		t.Cleanup(func() { m.Close() })
	}
	actx, acancel := context.WithCancel(context.Background())
	ataDone := make(chan error, 1)
	go func() { ataDone <- a.Run(actx) }()
	stopATA := sync.OnceFunc(func() { acancel(); <-ataDone })
	t.Cleanup(stopATA)
	t1 := time.Now()
	if err := bx.waitPeers(ctx, 2*n); err != nil {
		t.Fatal(err)
	}
	registered := time.Since(t1)
	if st, err := bx.con.Status(ctx); err == nil {
		checkLineBusy(t, st)
	}

	noCalls := measureFor(bx, measure)

	start := time.Now()
	sess, errs, took := dialEach(ctx, b, demo.DialOptions{NoStack: true}, func(i int) string { return callers[i-1].Path() })
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
			if failed <= 5 {
				t.Errorf("caller%d: %v; the box logged:\n%s", i+1, err, bx.log.Grep(fmt.Sprintf("=caller%d ", i+1), fmt.Sprintf("=modem%d ", i+1), fmt.Sprintf("=ttyS%d ", i+1)))
			}
		}
	}
	// Measure on the links that came up; the failures are already errors.
	var up []*demo.Session
	for _, s := range sess {
		if s != nil {
			up = append(up, s)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d dials failed; measuring the %d links that came up", failed, n, len(up))
	}
	if len(up) == 0 {
		t.FailNow()
	}
	slices.Sort(took)
	if err := bx.waitLinesConnected(ctx, n, len(up)); err != nil {
		t.Fatal(err)
	}
	addrs := map[netip.Addr]bool{}
	for _, s := range up {
		addrs[s.PPP.Local()] = true
	}
	if len(addrs) != len(up) {
		t.Errorf("%d distinct client addresses for %d links", len(addrs), len(up))
	}

	// Idle: nothing but LCP echoes (the box asks every second, the
	// clients answer).
	idle := measureFor(bx, measure)

	// Trickle: every client pings the gateway once a second.
	var sent, got atomic.Int64
	pctx, pcancel := context.WithCancel(ctx)
	var wg, pingers sync.WaitGroup
	for i, s := range up {
		wg.Add(1)
		pingers.Add(1)
		go func() { defer wg.Done(); readEchoes(s, uint16(i), &got) }()
		go func() { defer pingers.Done(); pingEverySecond(pctx, s, uint16(i), &sent) }()
	}
	traffic := measureFor(bx, measure)
	pcancel()
	pingers.Wait()
	// The last requests' replies are still on their way.
	for wait := time.Now(); got.Load() < sent.Load() && time.Since(wait) < 5*time.Second; {
		time.Sleep(20 * time.Millisecond)
	}

	hstart := time.Now()
	var hw sync.WaitGroup
	for _, s := range up {
		hw.Add(1)
		go func() { defer hw.Done(); s.HangUp(ctx) }()
	}
	hw.Wait()
	sess = nil
	wg.Wait() // the readers end with their links
	if err := bx.waitLines(ctx, n, "idle", 0); err != nil {
		t.Errorf("after hang-up: %v", err)
	}
	down := time.Since(hstart)
	stopATA()
	if err := bx.stop(); err != nil {
		t.Errorf("isp-box serve: %v\n%s", err, bx.log.Tail(40))
	}

	t.Logf("SCALE n=%d: box lines idle %v after start; %d SIP peers registered and qualified %v after the ATA started; %d of %d links up %v after dialling at once (dial p50 %v p95 %v max %v); all lines idle %v after hanging up",
		n, linesUp.Round(time.Millisecond), 2*n, registered.Round(time.Millisecond), len(up), n, allUp.Round(time.Millisecond),
		took[len(took)/2].Round(time.Millisecond), took[len(took)*95/100].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond),
		down.Round(time.Millisecond))
	for _, p := range []struct {
		name  string
		p     phase
		lines int // the lines the cost is shared by
	}{{"registered, no calls", noCalls, n}, {"idle, LCP echo 1 s", idle, len(up)}, {"1 ping/s per line", traffic, len(up)}} {
		k := float64(p.lines)
		t.Logf("SCALE n=%d: %-20s box: CPU %5.1f%% of a core = %6.1f µs/s per line, RSS %6.1f MiB = %5.0f KiB/line | emulators: CPU %5.1f%%, RSS %6.1f MiB, heap %.0f KiB/line",
			n, p.name, 100*p.p.boxCPU.Seconds()/p.p.wall.Seconds(), float64(p.p.boxCPU.Microseconds())/p.p.wall.Seconds()/k,
			float64(p.p.boxRSS)/(1<<20), float64(p.p.boxRSS)/k/1024,
			100*p.p.emuCPU.Seconds()/p.p.wall.Seconds(), float64(p.p.emuRSS)/(1<<20), float64(p.p.emuHeap-min(p.p.emuHeap, base.emuHeap))/k/1024)
	}
	t.Logf("SCALE n=%d: pings %d sent, %d answered (%.2f%% lost)", n, sent.Load(), got.Load(), 100*float64(sent.Load()-got.Load())/max(1, float64(sent.Load())))
	if got.Load() < sent.Load()*95/100 {
		t.Errorf("only %d of %d pings answered", got.Load(), sent.Load())
	}
}

// boxBinary is $ISPBOX_BIN, or ./cmd/isp-box built into a temporary
// directory.
func boxBinary(t *testing.T) string {
	if p := os.Getenv("ISPBOX_BIN"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "isp-box")
	cmd := exec.Command("go", "build", "-o", out, "github.com/isp-box/isp-box/cmd/isp-box")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/isp-box: %v\n%s", err, b)
	}
	return out
}

// freeUDP picks a free loopback UDP port for the box's SIP.
func freeUDP(t *testing.T) netip.AddrPort {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// boxProc is `isp-box serve` running as its own process.
type boxProc struct {
	cmd  *exec.Cmd
	con  *console.Client
	log  *testutil.LogBuffer
	done chan error
	stop func() error
}

func startBox(t *testing.T, bin, conf, dir string) *boxProc {
	sock := filepath.Join(dir, "isp-box.sock")
	lb := &testutil.LogBuffer{}
	cmd := exec.Command(bin, "serve", "-c", conf, "-s", sock, "--db", filepath.Join(dir, "isp-box.db"), "--network", "userspace", "--log-level", "info")
	cmd.Stdout, cmd.Stderr = lb, lb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	bx := &boxProc{cmd: cmd, con: console.NewClient(sock), log: lb, done: make(chan error, 1)}
	go func() { bx.done <- cmd.Wait() }()
	var err error
	bx.stop = sync.OnceValue(func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-bx.done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			err = fmt.Errorf("no exit 2 min after SIGTERM (%w)", <-bx.done)
		}
		return err
	})
	t.Cleanup(func() { bx.stop() })
	return bx
}

// waitLines waits until the box reports n lines in state and sessions
// live PPP sessions.
func (bx *boxProc) waitLines(ctx context.Context, n int, state string, sessions int) error {
	return bx.poll(ctx, func(st console.Status) string {
		k := 0
		for _, l := range st.Lines {
			if l.State == state {
				k++
			}
		}
		if len(st.Lines) != n || k != n || len(st.Sessions) != sessions {
			return fmt.Sprintf("%d of %d lines %s, %d sessions (want %d)", k, len(st.Lines), state, len(st.Sessions), sessions)
		}
		return ""
	})
}

// waitLinesConnected waits until k of the box's n lines are connected
// with k sessions.
func (bx *boxProc) waitLinesConnected(ctx context.Context, n, k int) error {
	return bx.poll(ctx, func(st console.Status) string {
		c := 0
		for _, l := range st.Lines {
			if l.State == "connected" {
				c++
			}
		}
		if len(st.Lines) != n || c != k || len(st.Sessions) != k {
			return fmt.Sprintf("%d of %d lines connected, %d sessions (want %d)", c, len(st.Lines), len(st.Sessions), k)
		}
		return ""
	})
}

// waitPeers waits until n SIP peers are registered and answer OPTIONS.
func (bx *boxProc) waitPeers(ctx context.Context, n int) error {
	return bx.poll(ctx, func(st console.Status) string {
		k := 0
		for _, p := range st.Peers {
			if p.Host.IsValid() && strings.HasPrefix(p.Status, "OK") {
				k++
			}
		}
		if k != n {
			return fmt.Sprintf("%d of %d peers registered and OK", k, n)
		}
		return ""
	})
}

// checkLineBusy fails t for every SIP peer the PBX holds as "line busy"
// while every modem line is idle: the PBX would answer its callers 486.
func checkLineBusy(t testing.TB, st console.Status) {
	t.Helper()
	for _, l := range st.Lines {
		if l.State != "idle" {
			return // not a quiet moment
		}
	}
	var stale []string
	for _, p := range st.Peers {
		if p.LineBusy {
			stale = append(stale, p.Name)
		}
	}
	if len(stale) > 0 {
		t.Errorf("every modem line is idle, yet the PBX holds %d peers' lines busy (it missed their LineState idle): %v", len(stale), stale[:min(len(stale), 10)])
	}
}

// poll asks the box's control socket for its status until not returns "",
// for up to 10 minutes.
func (bx *boxProc) poll(ctx context.Context, not func(console.Status) string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	last := "no status yet"
	for {
		select {
		case err := <-bx.done:
			bx.done <- err
			return fmt.Errorf("isp-box serve exited: %w (%s)\n%s", err, last, bx.log.Tail(40))
		default:
		}
		if st, err := bx.con.Status(ctx); err == nil {
			if last = not(st); last == "" {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// measureFor samples both processes' CPU over d, then their memory.
func measureFor(bx *boxProc, d time.Duration) phase {
	pid := bx.cmd.Process.Pid
	b0, e0 := procCPU(pid), rusage()
	t0 := time.Now()
	time.Sleep(d) // the measurement interval itself
	p := sample(pid)
	p.wall = time.Since(t0)
	p.boxCPU, p.emuCPU = procCPU(pid)-b0, rusage()-e0
	return p
}

// sample reads the memory of the box process pid (0: none) and this one.
func sample(pid int) phase {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p := phase{emuHeap: ms.HeapInuse, emuRSS: rssBytes("self")}
	if pid != 0 {
		p.boxRSS = rssBytes(strconv.Itoa(pid))
	}
	return p
}

// procCPU is utime+stime of process pid from /proc/pid/stat (fields 14
// and 15, in clock ticks of 1/100 s on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func rusage() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is VmRSS from /proc/<proc>/status.
func rssBytes(proc string) uint64 {
	f, err := os.Open("/proc/" + proc + "/status")
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
		if isEchoReply(buf[:n], id) {
			got.Add(1)
		}
	}
}

// isEchoReply says whether p is an IPv4 ICMP echo reply with identifier
// id (RFC 792).
func isEchoReply(p []byte, id uint16) bool {
	if len(p) < 28 || p[0]>>4 != 4 || p[9] != 1 {
		return false
	}
	ihl := int(p[0]&0x0f) * 4
	return len(p) >= ihl+8 && p[ihl] == 0 && binary.BigEndian.Uint16(p[ihl+4:]) == id
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
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:hl], 0))
	icmp := p[hl:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	for i := 8; i < len(icmp); i++ {
		icmp[i] = byte(i)
	}
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, 0))
	return p
}
