// Package packaging holds the Debian package's description (nfpm.yaml) and
// maintainer scripts; its test installs the package on this machine.
package packaging

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

	"github.com/isp-box/isp-box/internal/testutil"
)

// run runs a command, failing the test with its output on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// stat says a path's owner:group and mode, "root:isp-box 0640".
func stat(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return ""
	}
	st := fi.Sys().(*syscall.Stat_t)
	name := func(uid uint32) string {
		if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
			return u.Username
		}
		return fmt.Sprint(uid)
	}
	group := func(gid uint32) string {
		if g, err := user.LookupGroupId(fmt.Sprint(gid)); err == nil {
			return g.Name
		}
		return fmt.Sprint(gid)
	}
	return fmt.Sprintf("%s:%s %04o", name(st.Uid), group(st.Gid), fi.Mode().Perm())
}

// TestDebInstall builds the amd64 package (make deb), installs it with
// dpkg on this Debian, checks its files, owners and modes and the service
// user, runs check-config and serve as that user the way the unit does
// (RuntimeDirectory, StateDirectory: systemd is not running here, so the
// test does those steps), reaches it as a member of group isp-box without
// -s, then removes and purges the package and checks nothing is left.
func TestDebInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs the package")
	}
	testutil.NeedRoot(t, "installs the Debian package", "dpkg", "runuser", "make", "gzip")
	if _, err := os.Stat("/etc/debian_version"); err != nil {
		t.Skip("not Debian")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	exec.Command("dpkg", "--purge", "isp-box").Run() // a leftover of an interrupted run
	mk := exec.Command("make", "-C", root, "deb", "DEB_ARCHS=amd64")
	mk.Env = append(os.Environ(), "DEB_VERSION=0.0~test1")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	deb := filepath.Join(root, "dist", "isp-box_0.0~test1_amd64.deb")
	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "isp-box").Run()
		os.Remove(deb)
	})
	run(t, "dpkg", "-i", deb)

	for path, want := range map[string]string{
		"/usr/bin/isp-box":                               "root:root 0755",
		"/etc/isp-box":                                   "root:isp-box 0750",
		"/etc/isp-box/isp-box.conf":                      "root:isp-box 0640",
		"/var/lib/isp-box":                               "isp-box:isp-box 0750",
		"/lib/systemd/system/isp-box.service":            "root:root 0644",
		"/usr/share/man/man1/isp-box.1.gz":               "root:root 0644",
		"/usr/share/bash-completion/completions/isp-box": "root:root 0644",
		"/usr/share/zsh/vendor-completions/_isp-box":     "root:root 0644",
	} {
		if got := stat(t, path); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if got := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "isp-box"); !strings.Contains(got, "/etc/isp-box/isp-box.conf") {
		t.Errorf("the config is not a conffile: %q", got)
	}
	u, err := user.Lookup("isp-box")
	if err != nil {
		t.Fatal(err)
	}
	if groups := run(t, "id", "-nG", "isp-box"); !strings.Contains(" "+groups, " dialout") {
		t.Errorf("isp-box is not in dialout: %s", groups)
	}
	if sh := run(t, "getent", "passwd", "isp-box"); !strings.HasSuffix(strings.TrimSpace(sh), "/usr/sbin/nologin") || u.HomeDir != "/var/lib/isp-box" {
		t.Errorf("service user: %s", sh)
	}
	if out := run(t, "gzip", "-dc", "/usr/share/man/man1/isp-box.1.gz"); !strings.Contains(out, ".SS doctor") || !strings.Contains(out, ".TH ISP-BOX 1") {
		t.Errorf("man page lacks the commands:\n%s", out)
	}

	// check-config as the service user, on the installed config.
	run(t, "runuser", "-u", "isp-box", "--", "/usr/bin/isp-box", "check-config", "-q", "/etc/isp-box/isp-box.conf")

	// serve as the unit does: systemd makes RuntimeDirectory and passes
	// $RUNTIME_DIRECTORY and $STATE_DIRECTORY. The SIP port moves to a free
	// one (other tests may run), in a copy readable only by the user.
	os.RemoveAll("/run/isp-box")
	if err := os.MkdirAll("/run/isp-box", 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll("/run/isp-box") })
	run(t, "chown", "isp-box:isp-box", "/run/isp-box")
	conf, err := os.ReadFile("/etc/isp-box/isp-box.conf")
	if err != nil {
		t.Fatal(err)
	}
	port := testutil.FreeUDPPort(t)
	testConf := "/run/isp-box/test.conf"
	os.WriteFile(testConf, []byte(strings.Replace(string(conf), "udpbindaddr=0.0.0.0:5060", fmt.Sprintf("udpbindaddr=127.0.0.1:%d", port), 1)), 0o640)
	run(t, "chown", "root:isp-box", testConf)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// As systemd starts it: User=isp-box, SupplementaryGroups=dialout,
	// the directories' variables; SIGTERM goes to the process itself.
	serve := exec.CommandContext(ctx, "/usr/bin/isp-box", "serve", "-c", testConf)
	serve.Env = []string{"PATH=/usr/bin:/bin", "RUNTIME_DIRECTORY=/run/isp-box", "STATE_DIRECTORY=/var/lib/isp-box", "JOURNAL_STREAM=8:1"}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			n, _ := strconv.Atoi(g)
			groups = append(groups, uint32(n))
		}
	}
	serve.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	var log testutil.LogBuffer
	serve.Stdout, serve.Stderr = &log, &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("serve log:\n%s", log.String())
		}
	}()
	testutil.WaitFor(t, 30*time.Second, "the service's socket", func() (bool, string) {
		c, err := net.Dial("unix", "/run/isp-box/isp-box.sock")
		if err == nil {
			c.Close()
			return true, ""
		}
		return false, err.Error()
	})
	if got := stat(t, "/run/isp-box/isp-box.sock"); got != "isp-box:isp-box 0660" {
		t.Errorf("socket: %s, want isp-box:isp-box 0660", got)
	}
	// A member of group isp-box (here nobody, given the group) without -s.
	out, err := exec.Command("runuser", "-u", "nobody", "-g", "isp-box", "--", "env", "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent",
		"/usr/bin/isp-box", "peers").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pap2t-ispmodem") {
		t.Errorf("isp-box peers as a member of group isp-box, without -s: %v\n%s", err, out)
	}
	if got := stat(t, "/var/lib/isp-box/isp-box.db"); !strings.HasPrefix(got, "isp-box:isp-box ") {
		t.Errorf("database: %s, want the service user's", got)
	}
	if strings.Contains(log.String(), "time=") {
		t.Errorf("under journald (JOURNAL_STREAM) the log repeats the time journald stamps:\n%s", log.Tail(5))
	}
	syscall.Kill(serve.Process.Pid, syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		serve.Process.Kill()
		t.Fatal("serve did not stop within 30 s of SIGTERM")
	}
	if !strings.Contains(log.String(), `msg="isp-box stopped"`) {
		t.Errorf("no clean stop in the log")
	}
	os.Remove(testConf)

	// Remove: the program goes, the edited config stays; purge: all goes.
	run(t, "dpkg", "--remove", "isp-box")
	if _, err := os.Stat("/usr/bin/isp-box"); err == nil {
		t.Error("/usr/bin/isp-box left after dpkg --remove")
	}
	if _, err := os.Stat("/etc/isp-box/isp-box.conf"); err != nil {
		t.Errorf("the conffile went with dpkg --remove: %v", err)
	}
	run(t, "dpkg", "--purge", "isp-box")
	for _, p := range []string{"/etc/isp-box", "/var/lib/isp-box", "/lib/systemd/system/isp-box.service", "/usr/share/man/man1/isp-box.1.gz"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left after dpkg --purge", p)
		}
	}
	if _, err := user.Lookup("isp-box"); err == nil {
		t.Error("user isp-box left after dpkg --purge")
	}
	if _, err := user.LookupGroup("isp-box"); err == nil {
		t.Error("group isp-box left after dpkg --purge")
	}
}
