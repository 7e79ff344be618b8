package doctor

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/testutil"
)

const holdEnv = "ISPBOX_DOCTOR_HOLD_UDP"

// TestMain doubles as a program holding a UDP port (TestSIPPortHeld).
func TestMain(m *testing.M) {
	if addr := os.Getenv(holdEnv); addr != "" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		defer c.Close()
		fmt.Println("bound")
		time.Sleep(time.Minute)
		return
	}
	os.Exit(m.Run())
}

// conf is a config with one line on device and SIP on port.
func conf(t *testing.T, device, lockDir string, port int, extra string) *config.Config {
	t.Helper()
	src := fmt.Sprintf(`[general]
udpbindaddr=127.0.0.1:%d
[isp]
type=friend
secret=x
host=dynamic
[default]
exten => _X!,1,Dial(SIP/isp,20)
[box]
lock-dir = %s
database = %s
[line ttyUSB0]
device %s
peer isp
%s`, port, lockDir, filepath.Join(lockDir, "db", "isp-box.db"), device, extra)
	cfg, err := config.Parse("t.conf", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// find returns the findings of check whose text holds every part.
func find(fs []Finding, check string) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

func want(t *testing.T, fs []Finding, check string, level Level, parts ...string) {
	t.Helper()
	for _, f := range find(fs, check) {
		if f.Level != level {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(f.Msg, p)
		}
		if ok {
			return
		}
	}
	var all []string
	for _, f := range fs {
		all = append(all, f.String())
	}
	t.Errorf("no %s finding %q with %q in:\n%s", level, check, parts, strings.Join(all, "\n"))
}

func newPty(t *testing.T) string {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return s.Name()
}

// A serial port as Debian makes it (root:dialout 0660) and a service user
// outside dialout: FAIL, naming the group. As non-root, a pty of ours
// with mode 0 stands in.
func TestDeviceWithoutPermission(t *testing.T) {
	dev := newPty(t)
	dir := t.TempDir()
	o := Options{}
	if os.Geteuid() == 0 {
		g, err := user.LookupGroup("dialout")
		if err != nil {
			t.Skip("no dialout group")
		}
		gid, _ := strconv.Atoi(g.Gid)
		os.Chown(dev, 0, gid)
		os.Chmod(dev, 0o660)
		o.User = "nobody"
		fs := Check(conf(t, dev, dir, testutil.FreeUDPPort(t), ""), o)
		want(t, fs, "line ttyUSB0", Fail, "user nobody may not open it", "root:dialout 0660", "usermod -aG dialout nobody")
		return
	}
	os.Chmod(dev, 0)
	fs := Check(conf(t, dev, dir, testutil.FreeUDPPort(t), ""), o)
	want(t, fs, "line ttyUSB0", Fail, "may not open it", "dialout")
}

func TestDeviceOK(t *testing.T) {
	dev := newPty(t)
	fs := Check(conf(t, dev, t.TempDir(), testutil.FreeUDPPort(t), ""), Options{})
	want(t, fs, "line ttyUSB0", OK, "may open it")
}

func TestDeviceMissing(t *testing.T) {
	fs := Check(conf(t, "/dev/ttyUSB97", t.TempDir(), testutil.FreeUDPPort(t), ""), Options{})
	want(t, fs, "line ttyUSB0", Fail, "/dev/ttyUSB97 does not exist", "/dev/serial/by-id/")
}

// A live process holds the UUCP lock: warn, naming it.
func TestUUCPLockHeld(t *testing.T) {
	dev := newPty(t)
	dir := t.TempDir()
	holder := exec.Command("sleep", "60")
	if err := holder.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	real, _ := filepath.EvalSymlinks(dev)
	lockPath := filepath.Join(dir, "LCK.."+filepath.Base(real))
	os.WriteFile(lockPath, []byte(fmt.Sprintf("%10d\n", holder.Process.Pid)), 0o644)
	fs := Check(conf(t, dev, dir, testutil.FreeUDPPort(t), ""), Options{})
	want(t, fs, "line ttyUSB0", Warn, fmt.Sprintf("locked by sleep (pid %d)", holder.Process.Pid), lockPath)
}

// A program holding the SIP port: FAIL, naming it.
func TestSIPPortHeld(t *testing.T) {
	port := testutil.FreeUDPPort(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := exec.Command(exe, "-test.run", "^$")
	h.Env = append(os.Environ(), holdEnv+"="+fmt.Sprintf("127.0.0.1:%d", port))
	out, _ := h.StdoutPipe()
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, _ := out.Read(buf); !strings.HasPrefix(string(buf[:n]), "bound") {
		t.Fatalf("holder: %q", buf[:n])
	}
	fs := Check(conf(t, "/dev/null", t.TempDir(), port, ""), Options{})
	want(t, fs, "sip port", Fail, fmt.Sprintf("UDP 127.0.0.1:%d is in use by ", port), fmt.Sprintf("(pid %d)", h.Process.Pid))
	h.Process.Kill()
	h.Wait()
	fs = Check(conf(t, "/dev/null", t.TempDir(), port, ""), Options{})
	want(t, fs, "sip port", OK, "is free")
}

// brltty running (a process of that name) is reported with the fix.
func TestBrlttyRunning(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	data, _ := os.ReadFile(sleep)
	bin := filepath.Join(dir, "brltty")
	os.WriteFile(bin, data, 0o755)
	p := exec.Command(bin, "60")
	if err := p.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { p.Process.Kill(); p.Wait() }()
	testutil.Until(t, 5*time.Second, "brltty's comm", func() bool { return strings.TrimSpace(readComm(p.Process.Pid)) == "brltty" })
	fs := Check(conf(t, "/dev/null", t.TempDir(), testutil.FreeUDPPort(t), ""), Options{})
	want(t, fs, "serial ports", Warn, fmt.Sprintf("brltty (pid %d) runs", p.Process.Pid), "apt purge brltty")
}

func readComm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return string(b)
}

// A database left by root, for the service user: FAIL with the chown.
func TestDatabaseNotWritable(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	db := filepath.Join(dir, "isp-box.db")
	os.WriteFile(db, []byte("x"), 0o644)
	o := Options{Database: db}
	if os.Geteuid() == 0 {
		o.User = "nobody"
	} else {
		os.Chmod(db, 0o444)
	}
	fs := Check(conf(t, "/dev/null", t.TempDir(), testutil.FreeUDPPort(t), ""), o)
	want(t, fs, "database", Fail, "isp-box.db is not writable by ", "owned by ", "chown ")
}

func TestClock(t *testing.T) {
	o := Options{Now: func() time.Time { return time.Date(1970, 1, 1, 0, 1, 0, 0, time.UTC) }}
	fs := Check(conf(t, "/dev/null", t.TempDir(), testutil.FreeUDPPort(t), ""), o)
	want(t, fs, "clock", Fail, "1970-01-01", "systemd-timesyncd")
}

// net.ipv4.ping_group_range is per network namespace: set it for real in
// a new one (root), and run the check against that namespace's /proc.
func TestPingGroupRange(t *testing.T) {
	testutil.NeedRoot(t, "sets net.ipv4.ping_group_range in a network namespace", "unshare")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rng   string
		level string
	}{
		{"1 0", "warn"},
		{"0 2147483647", "ok"},
	} {
		out, err := exec.Command("unshare", "--net", "sh", "-c",
			fmt.Sprintf("echo %q > /proc/sys/net/ipv4/ping_group_range && ISPBOX_DOCTOR_PING_CHILD=1 %s -test.run '^TestPingGroupRangeChild$' -test.v", tc.rng, exe)).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.rng, err, out)
		}
		if !strings.Contains(string(out), "FINDING: "+fmt.Sprintf("%-4s", tc.level)+" ping: ") || !strings.Contains(string(out), "nobody") {
			t.Errorf("ping_group_range %q: want a %s finding for nobody:\n%s", tc.rng, tc.level, out)
		}
	}
}

// TestPingGroupRangeChild runs inside TestPingGroupRange's namespace.
func TestPingGroupRangeChild(t *testing.T) {
	if os.Getenv("ISPBOX_DOCTOR_PING_CHILD") == "" {
		t.Skip("run by TestPingGroupRange")
	}
	fs := Check(conf(t, "/dev/null", t.TempDir(), testutil.FreeUDPPort(t), ""), Options{User: "nobody"})
	for _, f := range find(fs, "ping") {
		fmt.Println("FINDING:", f)
	}
}

func TestATAAdvice(t *testing.T) {
	fs := ATAAdvice(ATA{Peer: "pap2t-ispmodem", UserAgent: "Linksys/PAP2T-5.1.6(LS)"})
	var all []string
	for _, f := range fs {
		all = append(all, f.Msg)
	}
	text := strings.Join(all, "\n")
	for _, w := range []string{"G711u", "Use Pref Codec Only yes", "Echo Canc Enable no", "Echo Supp Enable no", "Silence Supp Enable no",
		"FAX Passthru Method", "Jitter Buffer Adjustment disable", "Line N > Audio Configuration"} {
		if !strings.Contains(text, w) {
			t.Errorf("PAP2T advice lacks %q:\n%s", w, text)
		}
	}
	if fs := ATAAdvice(ATA{Peer: "x", UserAgent: "Grandstream HT801"}); len(fs) != 1 || fs[0].Level != Warn || !strings.Contains(fs[0].Msg, "G.711 only") {
		t.Errorf("unknown ATA: %v", fs)
	}
}
