package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/sipflood"
)

// TestFlood is `make bench-flood`: the isp-box binary in its own process
// under floods of unauthenticated INVITEs, wrong-password REGISTERs and
// OPTIONS from 256 loopback addresses, ISPBOX_FLOOD long each (60s in the
// make target), then all three at once. Meanwhile the ATA registers and
// calls every few seconds. Then calls below and above maxcalls. It
// reports peak RSS per flood, what the ATA got through, and RSS after.
func TestFlood(t *testing.T) {
	d, _ := time.ParseDuration(os.Getenv("ISPBOX_FLOOD"))
	if d <= 0 {
		t.Skip("set ISPBOX_FLOOD=60s (make bench-flood) to run the flood benchmark")
	}
	bin := boxBinary(t)
	dir := t.TempDir()
	sip := freeUDP(t)
	conf := filepath.Join(dir, "isp-box.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[general]
udpbindaddr=%s
[box]
network = userspace
[network]
gateway = 10.77.0.1
pool = 10.77.0.0/24
[pap2t-ispmodem]
type=friend
secret=password
host=dynamic
nat=no
[pap2t-client]
type=friend
secret=password
host=dynamic
nat=no
[default]
exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)
`, sip)), 0o644); err != nil {
		t.Fatal(err)
	}
	bx := startBox(t, bin, conf, dir)
	pid := bx.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 10*d+5*time.Minute)
	defer cancel()
	lo := netip.MustParseAddr("127.0.0.1")
	var callee, caller *sipflood.UA
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if callee, err = sipflood.NewUA(sip, lo, "pap2t-ispmodem", "password"); err != nil {
			t.Fatal(err)
		}
		if err = callee.Register(ctx, 3600); err == nil {
			break
		}
		callee.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the box never answered: %v\n%s", err, bx.log.String())
		}
	}
	defer callee.Close()
	caller, err := sipflood.NewUA(sip, lo, "pap2t-client", "password")
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	if err := caller.Register(ctx, 3600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	idle := vm(pid, "VmRSS")
	t.Logf("idle RSS %d MiB", idle>>20)

	type row struct {
		name                    string
		res                     sipflood.Result
		peak                    uint64
		regs, regOK, calls, cOK int
	}
	var rows []row
	for _, kinds := range [][]string{{"invite"}, {"register"}, {"options"}, {"invite", "register", "options"}} {
		name := strings.Join(kinds, "+")
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
					if r := vm(pid, "VmRSS"); r > peak.Load() {
						peak.Store(r)
					}
				}
			}
		}()
		done := make(chan sipflood.Result, 1)
		go func() {
			r, err := sipflood.Run(ctx, sipflood.Config{Target: sip, Sources: 256, Duration: d, Kinds: kinds, User: "pap2t-client"})
			if err != nil {
				t.Error(err)
			}
			done <- r
		}()
		rw := row{name: name}
		for end := time.Now().Add(d - 2*time.Second); time.Now().Before(end); {
			rw.regs++
			if err := caller.Register(ctx, 3600); err == nil {
				rw.regOK++
			} else {
				t.Logf("%s: ATA REGISTER: %v", name, err)
			}
			rw.calls++
			if err := caller.Call(ctx, "88567682", 500*time.Millisecond); err == nil {
				rw.cOK++
			} else {
				t.Logf("%s: ATA call: %v", name, err)
			}
			time.Sleep(3 * time.Second)
		}
		rw.res = <-done
		close(stop)
		wg.Wait()
		rw.peak = peak.Load()
		rows = append(rows, rw)
		if rw.peak > 150<<20 {
			t.Errorf("%s: peak RSS %d MiB, want < 150", name, rw.peak>>20)
		}
		if rw.regOK != rw.regs || rw.cOK != rw.calls {
			t.Errorf("%s: ATA registered %d/%d, called %d/%d", name, rw.regOK, rw.regs, rw.cOK, rw.calls)
		}
		time.Sleep(5 * time.Second)
	}
	time.Sleep(30 * time.Second)
	after := vm(pid, "VmRSS")
	hwm := vm(pid, "VmHWM")

	// calls below and above maxcalls (100): every call is answered or
	// refused with 503 at once, none half-built
	capacity := func(n int) (ok, shed, other int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, err := sipflood.NewUA(sip, lo, "pap2t-client", "password")
				if err != nil {
					t.Error(err)
					return
				}
				defer u.Close()
				time.Sleep(time.Duration(i) * 5 * time.Millisecond)
				err = u.Call(ctx, "88567682", 3*time.Second)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case strings.Contains(err.Error(), "503"):
					shed++
				default:
					other++
					t.Logf("call: %v", err)
				}
			}()
		}
		wg.Wait()
		return
	}
	okBelow, shedBelow, lostBelow := capacity(80)
	okAbove, shedAbove, lostAbove := capacity(150)

	var b strings.Builder
	fmt.Fprintf(&b, "\nflood %v each, 256 source addresses, isp-box pid %d, idle RSS %d MiB\n", d, pid, idle>>20)
	fmt.Fprintf(&b, "%-24s %10s %9s %9s %8s %10s %8s %8s\n", "flood", "requests", "req/s", "answers", "out/in", "peak RSS", "ATA reg", "ATA call")
	for _, r := range rows {
		ratio := float64(r.res.BytesIn) / float64(max(r.res.BytesOut, 1))
		fmt.Fprintf(&b, "%-24s %10d %9.0f %9d %7.2fx %7d MiB %5d/%-2d %5d/%-2d\n", r.name, r.res.Sent,
			float64(r.res.Sent)/r.res.Elapsed.Seconds(), r.res.Answers, ratio, r.peak>>20, r.regOK, r.regs, r.cOK, r.calls)
	}
	fmt.Fprintf(&b, "RSS 30 s after the floods %d MiB (high-water mark %d MiB)\n", after>>20, hwm>>20)
	fmt.Fprintf(&b, "80 calls at once (below maxcalls=100): %d answered, %d refused 503, %d lost\n", okBelow, shedBelow, lostBelow)
	fmt.Fprintf(&b, "150 calls at once (above): %d answered, %d refused 503, %d lost\n", okAbove, shedAbove, lostAbove)
	t.Log(b.String())
	if shedBelow+lostBelow != 0 || lostAbove != 0 {
		t.Errorf("calls lost: %d below capacity, %d above", shedBelow+lostBelow, lostAbove)
	}
	if after > hwm*3/4 {
		t.Logf("RSS after the floods is %d of %d MiB peak", after>>20, hwm>>20)
	}
}

// vm is a Vm* field of /proc/pid/status in bytes.
func vm(pid int, field string) uint64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
