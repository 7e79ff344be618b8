package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/testutil"
)

// Under systemd (Type=notify, WatchdogSec=): READY=1 once SIP is bound and
// the line has tried its port (here the example's missing /dev/ttyUSB0),
// with the counts in STATUS=; WATCHDOG=1 keeps coming; a reload is
// RELOADING=1 then READY=1; SIGTERM is STOPPING=1. The notify socket is
// one the test creates, as systemd would.
func TestServeSystemdNotify(t *testing.T) {
	needDaemonWithoutModem(t)
	nobody := os.Geteuid() == 0
	dir := userDir(t, nobody)
	notifyPath := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nobody {
		os.Chown(notifyPath, 65534, 65534)
	}
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(what string, match func(string) bool) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		var seen []string
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %s; saw %q", what, seen)
				}
				if match(m) {
					return m
				}
				seen = append(seen, m)
			case <-timeout:
				t.Fatalf("no %s within 20 s; saw %q", what, seen)
			}
		}
	}

	cfg := filepath.Join(dir, "pap2t.conf")
	if err := os.WriteFile(cfg, []byte(exampleConfig(t, testutil.FreeUDPPort(t), nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "XDG_RUNTIME_DIR=" + dir, "XDG_STATE_HOME=" + dir,
		"NOTIFY_SOCKET=" + notifyPath, "WATCHDOG_USEC=400000"}
	d := startServe(t, serveOpts{nobody: nobody, env: env, dir: dir}, sock, "-c", cfg, "-s", sock)

	ready := next("READY=1", func(m string) bool { return strings.Contains(m, "READY=1") })
	if !strings.Contains(ready, "STATUS=0/2 peers registered, 0/1 lines up, 0 calls, 0 sessions") {
		t.Errorf("READY without the counts: %q", ready)
	}
	// Ready means the line was tried: its error is already reported.
	st := statusOf(t, sock)
	if len(st.Lines) != 1 || st.Lines[0].Errors == 0 {
		t.Errorf("READY=1 before the line tried its port: %+v", st.Lines)
	}
	for range 2 {
		next("WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	}

	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	next("RELOADING=1", func(m string) bool { return strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") })
	next("READY=1 after the reload", func(m string) bool { return strings.Contains(m, "READY=1") })

	// isp-box reload (the control socket) says the same.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := console.NewClient(sock).Reload(ctx); err != nil {
		t.Fatal(err)
	}
	next("RELOADING=1 from isp-box reload", func(m string) bool { return strings.HasPrefix(m, "RELOADING=1") })
	next("READY=1 after isp-box reload", func(m string) bool { return strings.Contains(m, "READY=1") })

	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d", code)
	}
	next("STOPPING=1", func(m string) bool { return strings.HasPrefix(m, "STOPPING=1") })
}

// The shipped unit is one systemd accepts (systemd-analyze verify, with
// ExecStart pointing at the binary under test): Type=notify and the
// hardening options spelled as this systemd knows them.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("ISPBOX_REQUIRE_ROOT") != "" {
			t.Fatal("systemd-analyze not found (Debian package systemd)")
		}
		t.Skip("systemd-analyze not found (Debian package systemd)")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "examples", "isp-box.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=", "RuntimeDirectory=isp-box", "StateDirectory=isp-box",
		"SupplementaryGroups=dialout", "DeviceAllow=/dev/net/tun rw", "DeviceAllow=char-ttyUSB rw", "AF_NETLINK"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "isp-box.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/isp-box", binary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "isp-box.service") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}
