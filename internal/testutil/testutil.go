// Package testutil holds what the project's tests share: a log buffer a
// failing test prints the tail of, a goroutine-leak check, polling for a
// state the code reaches on its own time, short socket directories, free
// loopback ports and the root/tool requirements of the namespace tests.
//
// It is imported only by _test.go files and test harnesses.
package testutil

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LogBuffer collects log output written from many goroutines. It keeps the
// last few MB only, so a long test's log cannot grow without bound.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; when the buffer passes 8 MB the oldest half is dropped.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 8<<20 {
		b := bytes.Clone(l.buf.Bytes()[l.buf.Len()-4<<20:])
		l.buf.Reset()
		l.buf.Write(b)
	}
	return l.buf.Write(p)
}

// String returns everything kept.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Tail returns the last n lines.
func (l *LogBuffer) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Grep returns the lines that hold any of subs.
func (l *LogBuffer) Grep(subs ...string) string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		for _, s := range subs {
			if strings.Contains(line, s) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// LeakCheck fails the test if goroutines started during it outlive it by
// more than 10 s. Call it first in the test, so that its cleanup runs after
// the cleanups that stop what the test started.
func LeakCheck(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() { GoroutinesBack(t, before, 10*time.Second) })
}

// GoroutinesBack fails the test, with every goroutine's stack, if the
// number of goroutines has not come back down to before within d: for a
// test that stops what it started itself and then checks nothing outlived
// it.
func GoroutinesBack(t testing.TB, before int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitFor polls cond until it holds or timeout passes, then fails the test
// with what and the last state cond described. It is for states the code
// reaches on its own time with no event to wait on.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if last != "" {
				t.Fatalf("%s: not within %v; last: %s", what, timeout, last)
			}
			t.Fatalf("timed out waiting for %s (%v)", what, timeout)
		}
		<-tick.C
	}
}

// Until is WaitFor for a condition with nothing to say while it waits.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// ShortDir returns a temporary directory with a short path: unix socket
// paths are limited to 108 bytes and t.TempDir() names can be long.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ib")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// FreeUDPPort returns a loopback UDP port the kernel gave out a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeUDPPortBelowEphemeral picks a free loopback UDP port in 20000-29999,
// below the kernel's ephemeral range, so that no outgoing socket of another
// process takes it between this check and an external program's bind.
//
// The port stays the test's until it ends: a lock file (flock) in
// portLockDir keeps every other caller, in this test process or another
// one on the machine, from picking it. A test's programs bind, close and
// bind such a port again (sipp registers a line from it, exits, and
// answers calls on it later); another test that picked it in between made
// sipp fail with "Unable to bind main socket, errno 98".
func FreeUDPPortBelowEphemeral(t testing.TB) int {
	t.Helper()
	if err := os.MkdirAll(portLockDir, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(portLockDir, 0o777|os.ModeSticky) // like /tmp: a test run by another user shares it
	for range 1000 {
		port := 20000 + rand.IntN(10000)
		lock, err := os.OpenFile(filepath.Join(portLockDir, strconv.Itoa(port)), os.O_CREATE|os.O_RDONLY, 0o444)
		if err != nil {
			t.Fatal(err)
		}
		// flock locks belong to the open file, so a second pick of the
		// same port in this process fails here too.
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
			continue
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			lock.Close()
			continue
		}
		c.Close()
		t.Cleanup(func() { lock.Close() }) // after the cleanups of what the test bound to it
		return port
	}
	t.Fatal("no free UDP port")
	return 0
}

// portLockDir holds the lock files of FreeUDPPortBelowEphemeral's ports.
var portLockDir = filepath.Join(os.TempDir(), "isp-box-udp-ports")

// NeedRoot skips the test unless it runs as root with every tool in tools
// on PATH. With ISPBOX_REQUIRE_ROOT=1 (CI) it fails instead of skipping, so
// a missing package cannot hide the namespace tests.
func NeedRoot(t testing.TB, why string, tools ...string) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("ISPBOX_REQUIRE_ROOT") == "1" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("%s needs root", why)
	}
	for _, p := range tools {
		if _, err := exec.LookPath(p); err != nil {
			skip("%s needs %s (not installed)", why, p)
		}
	}
}

// ServePackets answers every datagram pc receives with what answer
// returns for it (nothing when answer returns nil), from a goroutine that
// ends when pc is closed. The slice answer is given is reused afterwards.
func ServePackets(pc net.PacketConn, answer func(p []byte, from net.Addr) []byte) {
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := answer(buf[:n], from); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
}

// Echo is the answer of an echo server, for ServePackets.
func Echo(p []byte, _ net.Addr) []byte { return p }

// EnvOrSkip returns the environment variable name, and skips the test
// with why when it is unset or empty: for measurements and helper
// processes that only a make target or a script runs.
func EnvOrSkip(t testing.TB, name, why string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skip(why)
	}
	return v
}

// CountsOrSkip reads the environment variable name as a comma-separated
// list of positive counts (ISPBOX_MEMBENCH=1000,10000): unset, the test
// is skipped with why (a measurement run only by its make target); a
// field that is not a positive count fails the test before anything runs.
func CountsOrSkip(t testing.TB, name, why string) []int {
	t.Helper()
	v := EnvOrSkip(t, name, why)
	var counts []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("%s: %q is not a count", name, f)
		}
		counts = append(counts, n)
	}
	return counts
}

// MemBenchCounts is make bench-mem's list of sizes (ISPBOX_MEMBENCH,
// e.g. 1000,10000) for the memory tests of pbx, ppp and netstack; unset,
// the test is skipped.
func MemBenchCounts(t testing.TB) []int {
	t.Helper()
	return CountsOrSkip(t, "ISPBOX_MEMBENCH", "a benchmark: make bench-mem (ISPBOX_MEMBENCH=1000,10000)")
}

// HeapNow is the live heap and goroutine stacks after two collections
// (what the process holds, without garbage) and the goroutine count: the
// memory benchmarks' reading.
func HeapNow() (heap, stacks uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse, runtime.NumGoroutine()
}

// Uplink joins two network namespaces as a box and its upstream: a veth
// pair, dev with boxAddr/24 in box (default route via serverAddr), eth0
// with serverAddr/24 in server, loopback up in both. Deleting a namespace
// removes its end of the pair, and so the pair.
func Uplink(t testing.TB, box, server, dev, boxAddr, serverAddr string) {
	t.Helper()
	Run(t, "ip", "-n", box, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", server)
	Run(t, "ip", "-n", box, "addr", "add", boxAddr+"/24", "dev", dev)
	Run(t, "ip", "-n", box, "link", "set", dev, "up")
	Run(t, "ip", "-n", box, "link", "set", "lo", "up")
	Run(t, "ip", "-n", box, "route", "add", "default", "via", serverAddr)
	Run(t, "ip", "-n", server, "addr", "add", serverAddr+"/24", "dev", "eth0")
	Run(t, "ip", "-n", server, "link", "set", "eth0", "up")
	Run(t, "ip", "-n", server, "link", "set", "lo", "up")
}

// Run runs a command and returns its combined output, failing t on error.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
