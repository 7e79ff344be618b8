package pbx

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/rtpload"
	"github.com/isp-box/isp-box/internal/testutil"
)

// The RTP relay side by side with rtpengine (make bench-rtp): the same
// generator (internal/rtpload: N calls, both directions, G.711 20 ms)
// through the box's relay and through Debian's rtpengine in userspace
// mode, alternated per call count in one run. Each relay runs in its own
// process and is driven through rtpengine's ng protocol: the box's relay
// by this test binary re-executed as TestRelayHelperProcess, which sets a
// call's relay up as an INVITE in relay mode does (newRelay, the caller's
// SDP address on offer, the callee's on answer).

const relayHelperEnv = "ISPBOX_RELAY_HELPER"

// TestRelayHelperProcess is the box's relay behind an ng control socket,
// run only as TestRTPCompare's child process.
func TestRelayHelperProcess(t *testing.T) {
	ctlAddr := os.Getenv(relayHelperEnv)
	if ctlAddr == "" {
		t.Skip("helper process of TestRTPCompare (make bench-rtp)")
	}
	ctl, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ctlAddr)))
	if err != nil {
		t.Fatal(err)
	}
	if f := os.Getenv("ISPBOX_RELAY_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			t.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			out.Close()
		}()
	}
	s := &Server{}
	s.cfg.General.RTPStart, s.cfg.General.RTPEnd = 4000, 11998
	s.addr = netip.MustParseAddrPort("127.0.0.1:0")
	ip := netip.MustParseAddr("127.0.0.1")
	var mu sync.Mutex
	relays := map[string]*relay{}
	ctx, cancel := context.WithCancel(context.Background())
	// The parent closes our stdin to stop us.
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()
	rtpload.ServeNG(ctx, ctl, func(req map[string]any) map[string]any {
		id, _ := req["call-id"].(string)
		fail := func(err error) map[string]any {
			return map[string]any{"result": "error", "error-reason": err.Error()}
		}
		mu.Lock()
		defer mu.Unlock()
		switch req["command"] {
		case "ping":
			return map[string]any{"result": "pong"}
		case "offer":
			remote, err := rtpload.SDPAddr(req["sdp"])
			if err != nil {
				return fail(err)
			}
			r := relays[id]
			if r == nil {
				if r, err = s.newRelay(ip, false); err != nil {
					return fail(err)
				}
				relays[id] = r
			}
			r.setRemoteAddr(sideCaller, remote)
			return map[string]any{"result": "ok", "sdp": rtpload.SDP(r.addr(sideCallee))}
		case "answer":
			remote, err := rtpload.SDPAddr(req["sdp"])
			if err != nil {
				return fail(err)
			}
			r := relays[id]
			if r == nil {
				return fail(fmt.Errorf("unknown call %q", id))
			}
			r.setRemoteAddr(sideCallee, remote)
			return map[string]any{"result": "ok", "sdp": rtpload.SDP(r.addr(sideCaller))}
		case "delete":
			if r := relays[id]; r != nil {
				r.close()
				delete(relays, id)
			}
			return map[string]any{"result": "ok"}
		default:
			return fail(fmt.Errorf("unknown command %v", req["command"]))
		}
	})
}

// proc is a relay process: its pid for CPU and memory.
type proc struct {
	name string
	cmd  *exec.Cmd
	ng   *rtpload.NG
}

// cpuTicks is utime+stime of pid (proc(5)).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// rssMB is pid's resident memory (VmRSS) in MB.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func startRelayProc(t *testing.T, name string, cmd *exec.Cmd, ctl netip.AddrPort, log *os.File) *proc {
	t.Helper()
	cmd.Stdout, cmd.Stderr = log, log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		// The box helper ends when its stdin closes (and writes its
		// profile); rtpengine on SIGTERM.
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
			return
		case <-time.After(3 * time.Second):
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ng, err := rtpload.DialNG(ctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ng.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := ng.Command(ctx, map[string]any{"command": "ping"}); err != nil {
		t.Fatalf("%s does not answer ng ping: %v", name, err)
	}
	return &proc{name: name, cmd: cmd, ng: ng}
}

// TestRTPCompare is make bench-rtp: ISPBOX_RTPBENCH lists the call
// counts (e.g. 100,500,1000), ISPBOX_RTPBENCH_DURATION the media time of
// each run (default 10s), ISPBOX_RTPBENCH_RELAYS which relays ("box
// rtpengine"), ISPBOX_RELAY_CPUPROFILE a file for the box relay's CPU
// profile. Needs rtpengine (Debian's rtpengine-daemon).
func TestRTPCompare(t *testing.T) {
	counts := testutil.EnvOrSkip(t, "ISPBOX_RTPBENCH", "a benchmark: make bench-rtp (ISPBOX_RTPBENCH=100,500,1000)")
	dur := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("ISPBOX_RTPBENCH_DURATION")); err == nil {
		dur = d
	}
	rtpe, err := exec.LookPath("rtpengine")
	if err != nil {
		t.Fatal("rtpengine not found: apt-get install rtpengine-daemon")
	}
	dir := t.TempDir()
	boxCtl, rtpeCtl := freeUDP(t), freeUDP(t)

	box := exec.Command(os.Args[0], "-test.run=^TestRelayHelperProcess$", "-test.timeout=0", "-test.v")
	box.Env = append(os.Environ(), relayHelperEnv+"="+boxCtl.String())
	boxP := startRelayProc(t, "isp-box relay", box, boxCtl, os.Stderr)

	// rtpengine in userspace (table = -1: no kernel forwarding), its own
	// config, loopback only, one port range apart from the box's.
	conf := filepath.Join(dir, "rtpengine.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `[rtpengine]
table = -1
interface = 127.0.0.1
listen-ng = %s
port-min = 12000
port-max = 19999
log-level = 4
delete-delay = 0
`, rtpeCtl), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(rtpe, "--version").CombinedOutput()
	rtpeCmd := exec.Command(rtpe, "--config-file="+conf, "--foreground", "--log-stderr", "--pidfile="+filepath.Join(dir, "rtpengine.pid"))
	rtpeLog := filepath.Join(dir, "rtpengine.log")
	logf, err := os.Create(rtpeLog)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	rtpeP := startRelayProc(t, "rtpengine", rtpeCmd, rtpeCtl, logf)
	which := os.Getenv("ISPBOX_RTPBENCH_RELAYS")
	var relays []*proc
	for _, p := range []*proc{boxP, rtpeP} {
		for _, w := range strings.Fields(which) {
			if strings.Contains(p.name, w) {
				relays = append(relays, p)
			}
		}
		if which == "" {
			relays = append(relays, p)
		}
	}

	fmt.Printf("RTP relay comparison: G.711 20 ms both ways, %v of media per run; %s\n", dur, strings.TrimSpace(string(out)))
	fmt.Printf("| calls | relay | sent | lost %% | latency p50/p99/max ms | added p50/p99 ms | jitter mean/max ms | relay CPU %% | relay RSS MB | generator late p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("ISPBOX_RTPBENCH: %q is not a call count", f)
		}
		ctx, cancel := context.WithTimeout(context.Background(), dur+2*time.Minute)
		base, err := rtpload.Run(ctx, rtpload.Direct{}, rtpload.Options{Calls: n, Duration: dur / 2})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		fmt.Printf("| %d | none (direct) | %d | %.3f | %s | – | %.3f/%.3f | – | – | %.2f |\n", n, base.Sent, base.LossPct(), ms3(base.P50, base.P99, base.Max), base.JitterMeanMS, base.JitterMaxMS, msf(base.SendLateP99))
		for _, p := range relays {
			pid := p.cmd.Process.Pid
			c0, t0 := cpuTicks(pid), time.Now()
			res, err := rtpload.Run(ctx, p.ng, rtpload.Options{Calls: n, Duration: dur})
			cpu := float64(cpuTicks(pid)-c0) / 100 / time.Since(t0).Seconds() * 100
			if err != nil {
				t.Errorf("%s at %d calls: %v", p.name, n, err)
				continue
			}
			fmt.Printf("| %d | %s | %d | %.3f | %s | %.3f/%.3f | %.3f/%.3f | %.0f | %.0f | %.2f |\n", n, p.name, res.Sent, res.LossPct(),
				ms3(res.P50, res.P99, res.Max), msf(res.P50-base.P50), msf(res.P99-base.P99), res.JitterMeanMS, res.JitterMaxMS, cpu, rssMB(pid), msf(res.SendLateP99))
			if res.SetupFailed > 0 {
				fmt.Printf("|   | (%s: %d calls not set up) |\n", p.name, res.SetupFailed)
			}
		}
		cancel()
	}
	if b, err := os.ReadFile(rtpeLog); err == nil {
		fmt.Printf("rtpengine logged %d lines, %d of them \"Too many packets in UDP receive queue\"\n",
			strings.Count(string(b), "\n"), strings.Count(string(b), "Too many packets in UDP receive queue"))
	}
}

// freeUDP is a loopback UDP address free a moment ago (ephemeral range,
// away from both relays' RTP ports).
func freeUDP(t *testing.T) netip.AddrPort {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func msf(d time.Duration) float64 { return float64(d) / 1e6 }

func ms3(a, b, c time.Duration) string {
	return fmt.Sprintf("%.2f/%.2f/%.2f", msf(a), msf(b), msf(c))
}
