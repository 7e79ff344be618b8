package testutil

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NeedProgram returns the path of the first of names found on PATH or in
// /usr/sbin (where Debian puts daemons). Missing, the test skips, naming
// the Debian package to install; with ISPBOX_REQUIRE_ROOT=1 (CI, which
// installs it) it fails instead.
func NeedProgram(t testing.TB, debianPackage string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		if p, err := exec.LookPath("/usr/sbin/" + name); err == nil {
			return p
		}
	}
	if os.Getenv("ISPBOX_REQUIRE_ROOT") == "1" {
		t.Fatalf("%s is not installed (Debian package %s; .ci/run installs it)", names[0], debianPackage)
	}
	t.Skipf("%s is not installed (apt-get install %s)", names[0], debianPackage)
	return ""
}

// DaemonSpec says how to run a real server program for a test
// (FreeRADIUS, Kamailio) and how to know it serves.
type DaemonSpec struct {
	Name string   // for messages: "freeradius"
	Args []string // the program and its arguments, in the foreground
	// ReadyLine, when set, is a substring of the output line the program
	// prints once it serves.
	ReadyLine string
	// UDPPorts are loopback ports the program binds; it is ready once
	// all of them are bound (read from /proc/net/udp, never probed by
	// binding, which could take the port from it).
	UDPPorts []int
	// Group runs the program in its own process group, stopped as a
	// group: for servers that fork workers.
	Group bool
	// ReadyWithin bounds the wait for readiness; 20 s if zero.
	ReadyWithin time.Duration
}

// Daemon is a running server program. Its output is kept for the test's
// failure messages; it dies with the test binary even when the binary
// panics (Pdeathsig), since no Cleanup runs then.
type Daemon struct {
	spec DaemonSpec

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *LogBuffer
}

// StartDaemon starts the program and waits until it serves; the test's
// end stops it and, when the test failed, prints its output's tail.
func StartDaemon(t testing.TB, spec DaemonSpec) *Daemon {
	t.Helper()
	if spec.ReadyWithin == 0 {
		spec.ReadyWithin = 20 * time.Second
	}
	d := &Daemon{spec: spec}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("%s output, last lines:\n%s", spec.Name, d.LogTail(60))
		}
	})
	d.Start(t)
	return d
}

// Start runs the program (again, after Stop) with a fresh output buffer
// and waits until it serves.
func (d *Daemon) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(d.spec.Args[0], d.spec.Args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: d.spec.Group, Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatalf("%s: %v", d.spec.Name, err)
	}
	pw.Close()
	log := &LogBuffer{}
	done := make(chan struct{})
	sawLine := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.done, d.log = cmd, done, log
	d.mu.Unlock()
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var once sync.Once
		for sc.Scan() {
			log.Write([]byte(sc.Text() + "\n"))
			if d.spec.ReadyLine != "" && strings.Contains(sc.Text(), d.spec.ReadyLine) {
				once.Do(func() { close(sawLine) })
			}
		}
	}()
	go func() { cmd.Wait(); close(done) }()
	if d.spec.ReadyLine == "" {
		close(sawLine)
	}
	deadline := time.After(d.spec.ReadyWithin)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for line := false; ; {
		select {
		case <-sawLine:
			line, sawLine = true, nil
		case <-tick.C:
		case <-done:
			t.Fatalf("%s exited at start:\n%s", d.spec.Name, d.LogTail(40))
		case <-deadline:
			d.Stop()
			t.Fatalf("%s not ready within %v (ports %v bound: %v):\n%s", d.spec.Name, d.spec.ReadyWithin,
				d.spec.UDPPorts, udpBound(cmd.Process.Pid, d.spec.UDPPorts), d.LogTail(40))
		}
		if line && udpBound(cmd.Process.Pid, d.spec.UDPPorts) {
			return
		}
	}
}

// Stop ends the program: SIGTERM, then SIGKILL after 5 s. Start brings
// it back; Stop on a stopped daemon does nothing.
func (d *Daemon) Stop() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	if d.spec.Group {
		pid = -pid
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(pid, syscall.SIGKILL)
		<-done
	}
}

// Log is the program's output since it last started.
func (d *Daemon) Log() string {
	d.mu.Lock()
	log := d.log
	d.mu.Unlock()
	if log == nil {
		return ""
	}
	return log.String()
}

// LogTail is the last n lines of Log.
func (d *Daemon) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(d.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// udpBound reports whether every port has a bound UDP socket, IPv4 or
// IPv6, in the network namespace of process pid, as the kernel lists them
// in /proc/PID/net/udp{,6}. Not /proc/net (that is /proc/self/net, the
// namespace of the test binary's main thread, which a test that entered
// a namespace on a locked thread may have left elsewhere).
func udpBound(pid int, ports []int) bool {
	bound := map[int]bool{}
	for _, f := range []string{"udp", "udp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, line := range strings.Split(string(b), "\n") {
			// "  sl  local_address rem_address ...": ADDR:PORT, the port in hex.
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			_, port, ok := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(port, 16, 16); ok && err == nil {
				bound[int(p)] = true
			}
		}
	}
	for _, p := range ports {
		if !bound[p] {
			return false
		}
	}
	return true
}
