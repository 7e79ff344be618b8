package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/isp-box/isp-box/internal/testutil"
)

// holdUDPEnv makes the test binary a stand-in for a program that holds a
// UDP port (TestMain): started through a link named "asterisk", it is what
// a migration meets when Asterisk still runs.
const holdUDPEnv = "ISPBOX_TEST_HOLD_UDP"

// holdUDP runs instead of the tests when holdUDPEnv is set: bind, say so
// on stdout, sleep until killed.
func holdUDP(addr string) {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Println("bound")
	time.Sleep(time.Hour)
}

// startHolder starts a process named asterisk holding UDP addr.
func startHolder(t *testing.T, addr string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "isp-box-holder")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	// A copy, not a link: the test binary's own directory may be closed
	// to the user the holder runs as.
	link := filepath.Join(dir, "asterisk")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, data, 0o755); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(link)
	c.Env = append(os.Environ(), holdUDPEnv+"="+addr)
	if os.Geteuid() == 0 { // the box runs as nobody: a process of its own user, whose fds it may read
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "bound") {
		t.Fatalf("holder: %q", buf[:n])
	}
	return c
}

// runServeFails runs `isp-box serve` expecting it to fail at start, and
// returns its output.
func runServeFails(t *testing.T, nobody bool, dir string, args ...string) string {
	t.Helper()
	c := exec.Command(binary(t), append([]string{"serve"}, args...)...)
	c.Dir = dir
	c.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "XDG_RUNTIME_DIR=" + dir, "XDG_STATE_HOME=" + dir}
	if nobody && os.Geteuid() == 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			c.Process.Kill()
		case <-done:
		}
	}()
	out, err := c.CombinedOutput()
	close(done)
	if c.ProcessState == nil || c.ProcessState.ExitCode() != 1 {
		t.Fatalf("serve: %v, want exit status 1; output:\n%s", err, out)
	}
	return string(out)
}

// A start that fails says what to do, once, and leaves nothing started
// (issue 13: "bind: address already in use" doubled, "isp-box stopped"
// logged twice, database and network started before the failure; a
// root-owned leftover database gave "unable to open database file (14)").
func TestServeStartFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	nobody := os.Geteuid() == 0
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string, port int) []string // extra serve args
		want  []string
	}{
		{
			name: "sip port held by asterisk",
			setup: func(t *testing.T, dir string, port int) []string {
				h := startHolder(t, fmt.Sprintf("127.0.0.1:%d", port))
				return []string{"--want-pid", fmt.Sprint(h.Process.Pid)}
			},
			want: []string{"is in use by asterisk (pid ", "Asterisk is still running: stop it (systemctl disable --now asterisk)"},
		},
		{
			name: "database left by root",
			setup: func(t *testing.T, dir string, port int) []string {
				db := filepath.Join(dir, "isp-box.db")
				if err := os.WriteFile(db, []byte("SQLite format 3\x00"), 0o644); err != nil {
					t.Fatal(err)
				}
				if os.Geteuid() != 0 {
					os.Chmod(db, 0o444) // as good as root's for this user
				}
				return []string{"--db", db}
			},
			want: []string{"isp-box.db is not writable by ", "owned by ", "left by a run as another user?", "fix: chown "},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := userDir(t, nobody)
			port := testutil.FreeUDPPort(t)
			cfg := filepath.Join(dir, "pap2t.conf")
			if err := os.WriteFile(cfg, []byte(exampleConfig(t, port, nil)), 0o644); err != nil {
				t.Fatal(err)
			}
			extra := tc.setup(t, dir, port)
			if len(extra) == 2 && extra[0] == "--want-pid" {
				tc.want = append(tc.want, "pid "+extra[1]+")")
				extra = nil
			}
			args := append([]string{"-c", cfg, "-s", filepath.Join(dir, "s.sock")}, extra...)
			if len(extra) == 0 {
				args = append(args, "--db", filepath.Join(dir, "new.db"))
			}
			out := runServeFails(t, nobody, dir, args...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if n := strings.Count(out, `msg="isp-box stopped"`); n != 1 {
				t.Errorf(`"isp-box stopped" logged %d times, want once:`+"\n%s", n, out)
			}
			if n := strings.Count(out, "address already in use") + strings.Count(out, "permission denied"); n > 1 {
				t.Errorf("the cause is repeated %d times:\n%s", n, out)
			}
			for _, started := range []string{"store opened", "network up", "sip listening", "control socket"} {
				if strings.Contains(out, started) {
					t.Errorf("%q before the failure: nothing should start\n%s", started, out)
				}
			}
		})
	}
}

// A serial port the box's user may not open is retried, never fatal, and
// `isp-box lines` names the fix (the dialout group) and does not count the
// line as up (issue 13: "open /dev/ttyS0: permission denied" with no word
// about dialout; "1 line, 1 up" while the only line was opening).
func TestServeLineWithoutPermission(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	nobody := os.Geteuid() == 0
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	// As root: a serial port as Debian makes it, root:dialout 0660, and
	// the box as nobody, outside dialout. Otherwise the pty is this
	// user's and mode 0 keeps it out.
	want := []string{"1 line, 0 up, 1 opening", "permission denied", "dialout"}
	if nobody {
		dialout, err := user.LookupGroup("dialout")
		if err != nil {
			t.Skipf("no dialout group: %v", err)
		}
		gid, _ := strconv.Atoi(dialout.Gid)
		if err := os.Chown(tty.Name(), 0, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tty.Name(), 0o660); err != nil {
			t.Fatal(err)
		}
		want = append(want, "add it to group dialout, e.g. usermod -aG dialout nobody")
	} else if err := os.Chmod(tty.Name(), 0); err != nil {
		t.Fatal(err)
	}
	dir := userDir(t, nobody)
	port := testutil.FreeUDPPort(t)
	cfg := filepath.Join(dir, "pap2t.conf")
	text := exampleConfig(t, port, func(s string) string {
		return strings.Replace(s, "port ttyUSB0", "port ttyUSB0\ndevice "+tty.Name(), 1)
	})
	if !strings.Contains(text, "device "+tty.Name()) {
		t.Fatal("examples/pap2t.conf has no \"port ttyUSB0\" line any more; update the test")
	}
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "XDG_RUNTIME_DIR=" + dir, "XDG_STATE_HOME=" + dir}
	d := startServe(t, serveOpts{nobody: nobody, env: env, dir: dir}, sock, "-c", cfg, "-s", sock)
	d.waitLog(20*time.Second, "line error", "permission denied", "dialout")

	linesShowHint(t, sock, 10*time.Second, "dialout", want)
	if rows := statusOf(t, sock).Lines; len(rows) != 1 || rows[0].State != "opening" {
		t.Errorf("lines: %+v, want one line opening", rows)
	}
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}

// linesShowHint polls `isp-box lines` until its output holds hint, then
// checks it holds every string of want.
func linesShowHint(t *testing.T, sock string, within time.Duration, hint string, want []string) {
	t.Helper()
	var out string
	testutil.WaitFor(t, within, "isp-box lines shows the hint", func() (bool, string) {
		var stdout, stderr strings.Builder
		c := exec.Command(binary(t), "lines", "-s", sock)
		c.Stdout, c.Stderr = &stdout, &stderr
		c.Run()
		out = stdout.String()
		return strings.Contains(out, hint), out + stderr.String()
	})
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("isp-box lines lacks %q:\n%s", w, out)
		}
	}
}
