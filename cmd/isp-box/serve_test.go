package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/hayes"
	"github.com/isp-box/isp-box/internal/status"
	"github.com/isp-box/isp-box/internal/testutil"
)

// The tests in this file run the real binary, as a user or an init system
// would: `go build` once per test run, then `isp-box serve` as a child.

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(holdUDPEnv); addr != "" {
		holdUDP(addr)
		return
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds cmd/isp-box once per test run, in a directory every user
// can read (the serve test runs it as nobody when it runs as root).
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			if goTool, err = exec.LookPath("go"); err != nil {
				buildErr = fmt.Errorf("no go command to build the binary: %w", err)
				return
			}
		}
		if buildDir, buildErr = os.MkdirTemp("", "isp-box-bin"); buildErr != nil {
			return
		}
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "isp-box")
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemon is one `isp-box serve` child process.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	sock   string
	stderr *testutil.LogBuffer
	exited chan struct{} // closed when the process has been waited for
	err    error         // Wait's result, once exited is closed
}

// serveOpts choose how the child runs.
type serveOpts struct {
	nobody bool     // run as uid/gid 65534 (when the test runs as root)
	env    []string // the child's whole environment if not nil
	dir    string   // its working directory
}

// startServe runs `isp-box serve args...` and returns once the control
// socket sock answers.
func startServe(t *testing.T, o serveOpts, sock string, args ...string) *daemon {
	t.Helper()
	bin := binary(t)
	d := &daemon{t: t, sock: sock, stderr: &testutil.LogBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	d.cmd.Stdout = d.stderr
	d.cmd.Stderr = d.stderr
	d.cmd.Dir = o.dir
	d.cmd.Env = o.env
	if o.nobody && os.Geteuid() == 0 {
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("isp-box serve output:\n%s", tailLines(d.stderr.String(), 80))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := console.NewClient(sock).Version(ctx)
		cancel()
		if err == nil {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("isp-box serve exited at start: %v\n%s", d.err, d.stderr.String())
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("control socket %s did not answer within 30 s: %v", sock, err)
		}
	}
}

// waitLog waits until the daemon's log has a line containing every one of
// parts, and returns it.
func (d *daemon) waitLog(timeout time.Duration, parts ...string) string {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range strings.Split(d.stderr.String(), "\n") {
			if containsAll(l, parts...) {
				return l
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no log line with %q within %v", parts, timeout)
		}
		select {
		case <-d.exited:
			d.t.Fatalf("isp-box serve exited (%v) before logging %q", d.err, parts)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// signal sends sig and waits for the process to exit; it returns the exit
// code (-1 for death by a signal).
func (d *daemon) stop(sig syscall.Signal) int {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		d.t.Fatalf("isp-box serve still running 60 s after %v", sig)
	}
	return d.cmd.ProcessState.ExitCode()
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exampleConfig returns examples/pap2t.conf with its SIP address moved to
// a free loopback port (0.0.0.0:5060 may be taken, or be another test's),
// and rewrite applied.
func exampleConfig(t *testing.T, port int, rewrite func(string) string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "pap2t.conf"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	const bind = "udpbindaddr=0.0.0.0:5060"
	if !strings.Contains(s, bind) {
		t.Fatalf("examples/pap2t.conf has no %q any more; update the test", bind)
	}
	s = strings.Replace(s, bind, fmt.Sprintf("udpbindaddr=127.0.0.1:%d", port), 1)
	if rewrite != nil {
		s = rewrite(s)
	}
	return s
}

// needDaemonWithoutModem skips in -short mode (the test builds and runs
// the binary) and on a machine with a /dev/ttyUSB0: the test wants the
// example's modem missing.
func needDaemonWithoutModem(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if _, err := os.Stat("/dev/ttyUSB0"); err == nil {
		t.Skip("/dev/ttyUSB0 exists on this machine: the test wants the example's modem missing")
	}
}

// userDir is a short temporary directory (unix socket paths are limited)
// owned by the user the daemon runs as.
func userDir(t *testing.T, nobody bool) string {
	t.Helper()
	d := testutil.ShortDir(t)
	if nobody && os.Geteuid() == 0 {
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func statusOf(t *testing.T, sock string) console.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := console.NewClient(sock).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestServeUnprivileged (issue 2): `isp-box serve -c examples/pap2t.conf`
// starts as an ordinary user with no serial hardware; the missing
// /dev/ttyUSB0 is reported and retried, never fatal; lines, version,
// status, peers and console work against it; SIGHUP and `isp-box reload`
// apply a valid file and refuse a broken one with file:line; SIGTERM stops
// it with status 0 and removes the socket.
func TestServeUnprivileged(t *testing.T) {
	needDaemonWithoutModem(t)
	nobody := os.Geteuid() == 0
	dir := userDir(t, nobody)
	const cfgArg = "pap2t.conf" // relative to the daemon's working directory, as typed
	cfg := filepath.Join(dir, cfgArg)
	text := exampleConfig(t, testutil.FreeUDPPort(t), nil)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// No -s and no --db: the ordinary user's defaults, under $XDG_RUNTIME_DIR
	// and $HOME, as `isp-box serve -c examples/pap2t.conf` finds them.
	sock := filepath.Join(dir, "xdg", "isp-box", "isp-box.sock")
	db := filepath.Join(dir, ".local", "state", "isp-box", "isp-box.db")
	childEnv := []string{"HOME=" + dir, "XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg"), "PATH=/usr/bin:/bin", "LANG=C"}
	binary(t) // before the clock starts
	start := time.Now()
	d := startServe(t, serveOpts{nobody: nobody, env: childEnv, dir: dir}, sock, "-c", cfgArg, "--log-level", "debug")
	t.Logf("serve answered on its socket after %v", time.Since(start).Round(time.Millisecond))
	if fi, err := os.Lstat(sock); err != nil {
		t.Fatal(err)
	} else if st := fi.Sys().(*syscall.Stat_t); nobody && st.Uid != 65534 {
		t.Errorf("socket owned by uid %d: the daemon did not run as the unprivileged user 65534", st.Uid)
	} else if fi.Mode().Perm() != console.SocketMode {
		t.Errorf("socket mode %v, want %v", fi.Mode().Perm(), os.FileMode(console.SocketMode))
	}

	// The missing modem: reported once, then retried (debug), not fatal.
	d.waitLog(30*time.Second, `msg="line error"`, "line=ttyUSB0", "/dev/ttyUSB0", "no such file or directory")
	d.waitLog(30*time.Second, `msg="still cannot open"`, "line=ttyUSB0")

	// lines: the line with its error, as a table and as JSON.
	code, out, errs := runCmd(t.Context(), "lines", "-s", sock)
	if code != 0 || !containsAll(out, "ttyUSB0", "/dev/ttyUSB0", "no such file or directory") {
		t.Errorf("lines: exit %d, stderr %q, output:\n%s", code, errs, out)
	}
	code, out, _ = runCmd(t.Context(), "lines", "--json", "-s", sock)
	var lines []status.Line
	if err := json.Unmarshal([]byte(out), &lines); code != 0 || err != nil {
		t.Fatalf("lines --json: exit %d, %v, %q", code, err, out)
	}
	if len(lines) != 1 || lines[0].Name != "ttyUSB0" || lines[0].Device != "/dev/ttyUSB0" || lines[0].Peer != "pap2t-ispmodem" ||
		lines[0].State == "idle" || !strings.Contains(lines[0].LastError, "no such file or directory") {
		t.Errorf("lines --json: %+v; want ttyUSB0 on /dev/ttyUSB0 behind pap2t-ispmodem, not idle, with the open error", lines)
	}

	// version, status, peers.
	if code, out, _ := runCmd(t.Context(), "version", "-s", sock); code != 0 || !strings.Contains(out, "\ndaemon: isp-box ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	code, out, _ = runCmd(t.Context(), "status", "-s", sock)
	if code != 0 || !containsAll(out, "config:   "+cfgArg, "network:  userspace", "peers:    2 (0 online)", "lines:    1", "calls:    0") {
		t.Errorf("status: exit %d, output:\n%s", code, out)
	}
	code, out, _ = runCmd(t.Context(), "peers", "-s", sock)
	if code != 0 || !containsAll(out, "pap2t-client", "pap2t-ispmodem", "2 sip peers") {
		t.Errorf("peers: exit %d, output:\n%s", code, out)
	}

	// console streams events: wait until its subscription is on the bus,
	// then reload, and see the notice.
	cctx, ccancel := context.WithCancel(t.Context())
	var cout, cerr testutil.LogBuffer
	cdone := make(chan int, 1)
	go func() { cdone <- run(cctx, &env{stdout: &cout, stderr: &cerr}, []string{"console", "-s", sock}) }()
	waitCond(t, 30*time.Second, "console subscribed", func() bool {
		for _, s := range statusOf(t, sock).Bus.Subscribers {
			if strings.HasPrefix(s.Name, "console") {
				return true
			}
		}
		return false
	})
	if code, out, errs := runCmd(t.Context(), "reload", "-s", sock); code != 0 || out != "config reloaded\n" {
		t.Errorf("reload: exit %d, %q, %q", code, out, errs)
	}
	waitCond(t, 30*time.Second, "the reload notice in the console", func() bool {
		return strings.Contains(cout.String(), "config reloaded from "+cfgArg)
	})
	ccancel()
	if code := <-cdone; code != 0 {
		t.Errorf("console: exit %d, %q", code, cerr.String())
	}
	if !strings.HasPrefix(cout.String(), "Connected to isp-box ") {
		t.Errorf("console output:\n%s", cout.String())
	}

	// SIGHUP applies a valid change: a new peer.
	added := text + "\n[pap2t-line3]\ncontext=default\ntype=friend\nsecret=password3\nhost=dynamic\n"
	if err := os.WriteFile(cfg, []byte(added), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 30*time.Second, "pap2t-line3 in peers after SIGHUP", func() bool {
		_, out, _ := runCmd(t.Context(), "peers", "-s", sock)
		return strings.Contains(out, "pap2t-line3") && strings.Contains(out, "3 sip peers")
	})

	// A broken file is refused with file:line; the running config stays.
	broken := added + "bogus-key=1\n"
	if err := os.WriteFile(cfg, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	badLine := strings.Count(broken, "\n")
	code, out, errs = runCmd(t.Context(), "reload", "-s", sock)
	if want := fmt.Sprintf("%s:%d: ", cfgArg, badLine); code != 1 || out != "" ||
		!strings.HasPrefix(errs, "isp-box: reload refused:\n") || !containsAll(errs, want, "bogus-key") {
		t.Errorf("reload of a broken file: exit %d, %q, stderr %q; want 1 and %s...bogus-key", code, out, errs, want)
	}
	if _, out, _ := runCmd(t.Context(), "peers", "-s", sock); !strings.Contains(out, "3 sip peers") {
		t.Errorf("peers after the refused reload:\n%s", out)
	}
	// SIGHUP with the broken file: logged, and the daemon keeps running.
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLog(30*time.Second, `msg="reload refused; the running config stays"`, fmt.Sprintf("%s:%d:", cfgArg, badLine))

	// SIGTERM: a clean stop.
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM (%v)", code, d.err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("control socket after SIGTERM: %v; want it removed", err)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("no database at the ordinary user's default path: %v", err)
	}

	// With the daemon gone, the binary says so in one line and exits 1.
	var stdout, stderr strings.Builder
	c := exec.Command(binary(t), "lines", "-s", sock)
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	want := "isp-box: no daemon at " + sock + ": no such file or directory (is \"isp-box serve\" running?)\n"
	if c.ProcessState.ExitCode() != 1 || stdout.Len() != 0 || stderr.String() != want {
		t.Errorf("isp-box lines with no daemon: %v, stdout %q, stderr %q; want exit 1 and %q", err, stdout.String(), stderr.String(), want)
	}
	out = d.stderr.String()
	if !strings.Contains(out, `msg="isp-box stopped"`) {
		t.Errorf("log after SIGTERM lacks the clean stop:\n%s", tailLines(out, 30))
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "level=ERROR") && !strings.Contains(l, "reload refused") {
			t.Errorf("error logged: %s", l)
		}
	}
}

// waitCond polls cond until it holds or timeout passes.
func waitCond(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestServeRestartKeepsRegistrations (issue 3): the two ATA lines register
// with `isp-box serve`; the daemon dies (SIGTERM, and kill -9 with its
// socket and UUCP lock left behind) while the ATA keeps running and sends
// no REGISTER; a new daemon on the same port and database shows both lines
// registered at their addresses at once, and a call through it routes:
// the client modem dials 88567682, the ISP line rings, the box's line
// answers on the ISP modem, CONNECT, PPP up, a ping to the gateway.
func TestServeRestartKeepsRegistrations(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, restarts it and dials through it")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(map[syscall.Signal]string{syscall.SIGTERM: "sigterm", syscall.SIGKILL: "kill-9"}[sig], func(t *testing.T) {
			testRestart(t, sig)
		})
	}
}

func testRestart(t *testing.T, sig syscall.Signal) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := testutil.ShortDir(t)
	port := testutil.FreeUDPPort(t)
	// The UUCP lock is named after the device's base name: unique per test.
	ispLink := filepath.Join(dir, "tty-"+filepath.Base(dir))
	cfg := filepath.Join(dir, "pap2t.conf")
	text := exampleConfig(t, port, func(s string) string {
		// The example's modem line, on the emulated ISP modem's pty.
		return strings.Replace(s, " peer pap2t-ispmodem\n", " peer pap2t-ispmodem\n device "+ispLink+"\n", 1)
	})
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sock, db := filepath.Join(dir, "isp-box.sock"), filepath.Join(dir, "isp-box.db")
	binary(t) // before the clock starts

	r := newLineRig(t, dir, ispLink, port)
	d1 := startServe(t, serveOpts{dir: dir}, sock, "-c", cfg, "-s", sock, "--db", db, "--log-level", "debug")
	r.run()
	waitCond(t, 30*time.Second, "both ATA lines registered", r.registered)
	before := peersJSON(t, sock)
	for _, user := range []string{"pap2t-ispmodem", "pap2t-client"} {
		if p := before[user]; p.Host != netip.MustParseAddr("127.0.0.1") || p.Port != int(r.addr[user].Port()) {
			t.Fatalf("peer %s before the restart: %q:%d; want %v", user, p.Host, p.Port, r.addr[user])
		}
	}

	// The registrar answers before the binding reaches the disk (box's
	// bindingWriter writes in the background; a crash may lose the last
	// write's worth, which the ATA's next refresh restores). What a
	// restart must keep is what was written: wait for both bindings in
	// the database, read as another process would, before the kill.
	waitCond(t, 30*time.Second, "both bindings in the database", func() bool {
		stored := storedContacts(t, db)
		return stored["pap2t-ispmodem"] == before["pap2t-ispmodem"].Contact &&
			stored["pap2t-client"] == before["pap2t-client"].Contact
	})

	start := time.Now()
	code := d1.stop(sig)
	switch sig {
	case syscall.SIGKILL:
		if _, err := os.Lstat(sock); err != nil {
			t.Errorf("after kill -9 the socket should be left behind: %v", err)
		}
	default:
		if code != 0 {
			t.Errorf("exit status %d after SIGTERM", code)
		}
	}
	d2 := startServe(t, serveOpts{dir: dir}, sock, "-c", cfg, "-s", sock, "--db", db, "--log-level", "debug")
	after := peersJSON(t, sock)
	t.Logf("restarted after %v and answered in %v", sig, time.Since(start).Round(time.Millisecond))
	for _, user := range []string{"pap2t-ispmodem", "pap2t-client"} {
		p, old := after[user], before[user]
		if p.Host != old.Host || p.Port != old.Port || p.Contact != old.Contact || !p.Expires.Equal(old.Expires) {
			t.Errorf("peer %s after the restart: %s:%d contact %q expires %v; before: %s:%d %q %v",
				user, p.Host, p.Port, p.Contact, p.Expires, old.Host, old.Port, old.Contact, old.Expires)
		}
	}

	// A call routes once the ISP peer answers OPTIONS and the line is idle.
	waitCond(t, 60*time.Second, "peers OK and the line idle", func() bool {
		st := statusOf(t, sock)
		for _, p := range st.Peers {
			if !strings.HasPrefix(p.Status, "OK") {
				return false
			}
		}
		return len(st.Lines) == 1 && st.Lines[0].State == "idle"
	})
	s, err := demo.Dial(ctx, r.cli.Path(), demo.DialOptions{Number: "88567682"})
	if err != nil {
		t.Fatalf("dial through the restarted box: %v", err)
	}
	if _, err := s.Net.Ping(ctx, netip.MustParseAddr("192.168.32.1")); err != nil {
		t.Errorf("ping the gateway: %v", err)
	}
	if err := s.HangUp(ctx); err != nil {
		t.Errorf("hang up: %v", err)
	}
	if l := d2.stderr.String(); strings.Contains(l, "msg=registered ") || strings.Contains(l, "msg=unregistered ") {
		t.Errorf("a REGISTER reached the restarted box; it should have known the lines from its database")
	}
	waitCond(t, 30*time.Second, "the call record", func() bool {
		_, out, _ := runCmd(t.Context(), "calls", "--history", "--json", "-s", sock)
		var recs []bus.CallEnded
		return json.Unmarshal([]byte(out), &recs) == nil && len(recs) == 1 && recs[0].Status == "ANSWER"
	})
	if code := d2.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}

// peersJSON is `isp-box peers --json` by name.
// storedContacts reads the registrations table of the database at path
// read-only, as a second process, not through the daemon.
func storedContacts(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), "SELECT peer, contact FROM registrations")
	if err != nil {
		return nil // not created yet
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var peer, contact string
		if err := rows.Scan(&peer, &contact); err != nil {
			t.Fatal(err)
		}
		m[peer] = contact
	}
	return m
}

func peersJSON(t *testing.T, sock string) map[string]status.Peer {
	t.Helper()
	code, out, errs := runCmd(t.Context(), "peers", "--json", "-s", sock)
	var rows []status.Peer
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
		t.Fatalf("peers --json: exit %d, %v, %q %q", code, err, out, errs)
	}
	m := map[string]status.Peer{}
	for _, p := range rows {
		m[p.Name] = p
	}
	return m
}

// lineRig is the emulated PAP2T with a modem on each port: the ISP modem
// (whose pty the daemon's line opens) on line 1, the caller's on line 2.
// It outlives the daemons of a test.
type lineRig struct {
	a        *ata.ATA
	isp, cli *hayes.Modem
	addr     map[string]netip.AddrPort
	ctx      context.Context
	done     chan error
}

func newLineRig(t *testing.T, dir, ispLink string, port int) *lineRig {
	t.Helper()
	reg := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	a, err := ata.New(ata.Options{Lines: []ata.LineConfig{
		{Name: "line1", User: "pap2t-ispmodem", Password: "password", Registrar: reg},
		{Name: "line2", User: "pap2t-client", Password: "password", Registrar: reg},
	}})
	if err != nil {
		t.Fatal(err)
	}
	const ring = 300 * time.Millisecond // the config's "rings 2" in 0.6 s
	isp, err := hayes.New(hayes.Options{Link: ispLink, Phone: a.Line(0), RingInterval: ring, Name: "isp"})
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	cli, err := hayes.New(hayes.Options{Link: filepath.Join(dir, "client"), Phone: a.Line(1), RingInterval: ring, Name: "client"})
	if err != nil {
		isp.Close()
		a.Close()
		t.Fatal(err)
	}
	a.Line(0).Plug(isp)
	a.Line(1).Plug(cli)
	r := &lineRig{a: a, isp: isp, cli: cli, addr: map[string]netip.AddrPort{}, done: make(chan error, 1)}
	for _, li := range a.Describe() {
		r.addr[li.User] = li.SIP
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx = ctx
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("ata: %v", err)
			}
		default:
			a.Close() // never ran
		}
		isp.Close()
		cli.Close()
	})
	return r
}

// run starts the ATA: its lines register at once.
func (r *lineRig) run() { go func() { r.done <- r.a.Run(r.ctx) }() }

func (r *lineRig) registered() bool {
	for _, li := range r.a.Describe() {
		if !li.Registered {
			return false
		}
	}
	return true
}

// TestServeDebugPerLine: the seed's `debug 9` (mgetty.config) turns on the
// debug log of that line alone, as mgetty's log level was per port; the
// rest of the box logs at its own level (info here). Without it the line's
// debug lines are gone too.
func TestServeDebugPerLine(t *testing.T) {
	needDaemonWithoutModem(t)
	for _, tc := range []struct {
		name    string
		rewrite func(string) string
		debug   bool
	}{
		{"debug 9", nil, true},
		{"debug 0", func(s string) string { return strings.Replace(s, "debug 9", "debug 0", 1) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := userDir(t, false)
			cfg := filepath.Join(dir, "pap2t.conf")
			text := exampleConfig(t, testutil.FreeUDPPort(t), tc.rewrite)
			if tc.debug && !strings.Contains(text, "debug 9") {
				t.Fatal("examples/pap2t.conf has no `debug 9` any more; update the test")
			}
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "isp-box.sock")
			d := startServe(t, serveOpts{}, sock, "-c", cfg, "-s", sock, "--db", filepath.Join(dir, "isp-box.db"), "--log-level", "info")
			d.waitLog(30*time.Second, `msg="line error"`, "line=ttyUSB0")
			if tc.debug {
				// The line's retry is a debug record: there only when its debug is on.
				d.waitLog(30*time.Second, "level=DEBUG", `msg="still cannot open"`, "comp=modem", "line=ttyUSB0")
			} else {
				time.Sleep(2 * time.Second) // a retry or two
			}
			if code := d.stop(syscall.SIGTERM); code != 0 {
				t.Errorf("exit %d", code)
			}
			for _, l := range strings.Split(d.stderr.String(), "\n") {
				if !strings.Contains(l, "level=DEBUG") {
					continue
				}
				if !tc.debug || !strings.Contains(l, "comp=modem line=ttyUSB0") && !strings.Contains(l, "comp=ppp ") {
					t.Errorf("debug record from a part whose debug is off: %s", l)
				}
			}
		})
	}
}
