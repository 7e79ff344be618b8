package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/hayes"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/modem/lock"
)

// A config the service user may not read says whose it is and the fix,
// in check-config (the unit's ExecStartPre) and in serve (issue 13: the
// steps in the unit's header left /etc/isp-box/isp-box.conf root:root
// 0640, and ExecStartPre failed with a bare "permission denied").
func TestConfigUnreadableByServiceUser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	nobody := os.Geteuid() == 0
	dir := userDir(t, nobody)
	cfg := filepath.Join(dir, "isp-box.conf")
	if err := os.WriteFile(cfg, []byte(exampleConfig(t, testutil.FreeUDPPort(t), nil)), 0o640); err != nil {
		t.Fatal(err)
	}
	// As root: the file as a hand install leaves it, root:root 0640, read
	// by nobody. Otherwise this user's own file without read permission.
	want := []string{"cannot read config: permission denied", cfg + " is owned by "}
	if nobody {
		want = append(want, "owned by root:root 0640", "user nobody is neither its owner nor in group root",
			"fix: chgrp nogroup "+cfg+" && chmod g+r "+cfg, "root:isp-box 0640")
	} else {
		if err := os.Chmod(cfg, 0o040); err != nil {
			t.Fatal(err)
		}
		want = append(want, "fix: chmod u+r "+cfg)
	}

	c := exec.Command(binary(t), "check-config", cfg)
	c.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	if nobody {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := c.CombinedOutput()
	if c.ProcessState == nil || c.ProcessState.ExitCode() != 1 {
		t.Fatalf("check-config: %v, want exit status 1:\n%s", err, out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("check-config's output lacks %q:\n%s", w, out)
		}
	}

	serve := runServeFails(t, nobody, dir, "-c", cfg, "-s", filepath.Join(dir, "s.sock"), "--db", filepath.Join(dir, "x.db"))
	for _, w := range want {
		if !strings.Contains(serve, w) {
			t.Errorf("serve's output lacks %q:\n%s", w, serve)
		}
	}
	if n := strings.Count(serve, "permission denied"); n != 1 {
		t.Errorf("the cause is given %d times, want once:\n%s", n, serve)
	}
}

// A line whose adapter is not there is "opening", not up, and `isp-box
// lines` says what to look at: the adapter, /dev/serial/by-id, and
// ModemManager or brltty, which take fresh ttyUSB ports (issue 13:
// "1 line, 1 up" while the only line was opening with "lstat
// /dev/ttyUSB0: no such file or directory", and nothing about them).
func TestServeLineDeviceMissing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dev := "/dev/ttyUSB97"
	if _, err := os.Stat(dev); err == nil {
		t.Skipf("%s exists here", dev)
	}
	dir := userDir(t, false)
	port := testutil.FreeUDPPort(t)
	cfg := filepath.Join(dir, "pap2t.conf")
	text := exampleConfig(t, port, func(s string) string {
		return strings.Replace(s, "port ttyUSB0", "port ttyUSB0\ndevice "+dev, 1)
	})
	if !strings.Contains(text, "device "+dev) {
		t.Fatal("examples/pap2t.conf has no \"port ttyUSB0\" line any more; update the test")
	}
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "XDG_RUNTIME_DIR=" + dir, "XDG_STATE_HOME=" + dir}
	d := startServe(t, serveOpts{env: env, dir: dir}, sock, "-c", cfg, "-s", sock, "--db", filepath.Join(dir, "x.db"))
	want := []string{"1 line, 0 up, 1 opening", dev, "no such file or directory", "is the adapter plugged in?",
		"/dev/serial/by-id/", "ModemManager or brltty may have taken or renamed it"}
	var out string
	testutil.WaitFor(t, 20*time.Second, "isp-box lines shows the hint", func() (bool, string) {
		out = runLines(t, sock)
		return strings.Contains(out, "plugged in"), out
	})
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("isp-box lines lacks %q:\n%s", w, out)
		}
	}
	d.waitLog(5*time.Second, "line error", dev, "ModemManager")
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
}

// A line whose port another program holds the UUCP lock of says so: the
// log names the holder once, `isp-box lines` shows it as the line's last
// error and does not count the line up; once the holder exits the line
// comes up and the last error is gone (issue 13: "opening, 0 errors and
// nothing in the log"; "last error stays after recovery").
func TestServeLineForeignLock(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := userDir(t, false)
	isp, err := hayes.New(hayes.Options{Link: filepath.Join(dir, "ttyUSB0"), Name: "isp"})
	if err != nil {
		t.Fatal(err)
	}
	defer isp.Close()
	lockDir := filepath.Join(dir, "lock")
	if err := os.Mkdir(lockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("sleep", "120")
	if err := holder.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	if err := os.WriteFile(lock.Path(lockDir, isp.Path()), []byte(fmt.Sprintf("%10d\n", holder.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}

	port := testutil.FreeUDPPort(t)
	cfg := filepath.Join(dir, "pap2t.conf")
	text := exampleConfig(t, port, func(s string) string {
		s = strings.Replace(s, "port ttyUSB0", "port ttyUSB0\ndevice "+isp.Path(), 1)
		return strings.Replace(s, "[box]", "[box]\nlock-dir = "+lockDir, 1)
	})
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "XDG_RUNTIME_DIR=" + dir, "XDG_STATE_HOME=" + dir}
	d := startServe(t, serveOpts{env: env, dir: dir}, sock, "-c", cfg, "-s", sock, "--db", filepath.Join(dir, "x.db"))
	held := fmt.Sprintf("locked by sleep (pid %d)", holder.Process.Pid)
	d.waitLog(20*time.Second, held)

	out := runLines(t, sock)
	for _, w := range []string{"1 line, 0 up, 1 opening", held, "UUCP lock"} {
		if !strings.Contains(out, w) {
			t.Errorf("while the lock is held, isp-box lines lacks %q:\n%s", w, out)
		}
	}
	holder.Process.Kill()
	holder.Wait()
	testutil.WaitFor(t, 30*time.Second, "the line up once the lock is free", func() (bool, string) {
		out = runLines(t, sock)
		return strings.Contains(out, "1 line, 1 up"), out
	})
	if strings.Contains(out, "last error") || strings.Contains(out, "locked by") {
		t.Errorf("the last error stays after the line came up:\n%s", out)
	}
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	if n := strings.Count(d.stderr.String(), held); n != 1 {
		t.Errorf("the lock's holder is logged %d times, want once:\n%s", n, d.stderr.Tail(40))
	}
}

// runLines is `isp-box lines -s sock`'s output, errors included.
func runLines(t *testing.T, sock string) string {
	t.Helper()
	out, _ := exec.Command(binary(t), "lines", "-s", sock).CombinedOutput()
	return string(out)
}
