// Package doctor checks a machine against an isp-box config before (or
// while) the box runs on it, and says what to do: one finding per line.
// Each check looks at the real thing (the device node and its mode, the
// UUCP lock file and its process, the sockets in /proc/net, the sysctls),
// never at what the config hopes for.
package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/hostcheck"
	"github.com/isp-box/isp-box/internal/store"
	"github.com/isp-box/isp-box/modem/lock"
	"github.com/isp-box/isp-box/netstack"
)

// Level is how bad a finding is.
type Level int

const (
	OK   Level = iota // checked, fine
	Warn              // works, but not as well as it could, or may fail later
	Fail              // the box will not do its job until this is fixed
)

func (l Level) String() string { return [...]string{"ok", "warn", "FAIL"}[l] }

// Finding is one line of the report.
type Finding struct {
	Level Level
	Check string // what was checked: "line ttyUSB0 device", "sip port", ...
	Msg   string // what was found and what to do
}

func (f Finding) String() string { return fmt.Sprintf("%-4s %s: %s", f.Level, f.Check, f.Msg) }

// Options say whom the box runs as and where to look.
type Options struct {
	// User is the account the service runs as ("" = this process's user).
	User string
	// Database is the SQLite path ("" = the config's, else the default).
	Database string
	// Proc is the procfs root ("" = /proc).
	Proc string
	// Now is the clock to judge ("" = time.Now).
	Now func() time.Time
}

// Check runs every check that applies to cfg.
func Check(cfg *config.Config, o Options) []Finding {
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	acct := account(o.User)
	var out []Finding
	add := func(l Level, check, format string, args ...any) {
		out = append(out, Finding{Level: l, Check: check, Msg: fmt.Sprintf(format, args...)})
	}

	// Serial lines: the device, who may open it, the UUCP lock.
	for _, ln := range cfg.Lines {
		m := ln.Modem
		check := "line " + m.Name
		real, err := filepath.EvalSymlinks(m.Device)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			hint := "plug the modem in, or fix device/port in the config; a /dev/serial/by-id/ path survives re-plugging"
			if strings.Contains(m.Device, "ttyUSB") || strings.Contains(m.Device, "ttyACM") {
				hint += "; ls /dev/serial/by-id/ lists the adapters"
			}
			add(Fail, check, "%s does not exist: %s", m.Device, hint)
			continue
		case err != nil:
			add(Fail, check, "%s: %v", m.Device, err)
			continue
		}
		if ok, why := acct.canReadWrite(real); !ok {
			add(Fail, check, "%s: user %s may not open it (%s): %s", m.Device, acct.name, hostcheck.Owner(real), why)
		} else {
			add(OK, check, "%s (%s): user %s may open it", m.Device, hostcheck.Owner(real), acct.name)
		}
		if m.Lock {
			dir := m.LockDir
			if dir == "" {
				dir = "/var/lock"
			}
			lp := lock.Path(dir, real)
			pid, err := lock.ReadPID(lp)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				add(Warn, check, "UUCP lock %s unreadable: %v", lp, err)
			case pid > 0 && alive(pid):
				add(Warn, check, "locked by %s (UUCP lock %s): the box waits until it exits; stop it (a terminal program, a dial-out, mgetty?)",
					hostcheck.Process{PID: pid, Comm: hostcheck.Comm(pid)}, lp)
			default:
				add(OK, check, "stale UUCP lock %s (pid %d gone): the box removes it when it opens the port", lp, pid)
			}
			if err := unixAccessFor(acct, dir); err != nil {
				add(Fail, check, "lock directory %s: %v", dir, err)
			}
		}
	}
	// ModemManager and brltty probe and grab fresh USB serial ports.
	if len(cfg.Lines) > 0 {
		for _, p := range procsNamed(o.Proc, "ModemManager", "brltty") {
			fix := "systemctl disable --now ModemManager, or a udev rule ENV{ID_MM_DEVICE_IGNORE}=\"1\" for the modem"
			if p.Comm == "brltty" {
				fix = "apt purge brltty (it claims USB serial adapters as braille displays)"
			}
			add(Warn, "serial ports", "%s runs and may grab or probe the modem's port: %s", p, fix)
		}
	}

	// The SIP port.
	addr := cfg.PBX.General.UDPBindAddr
	if err := hostcheck.UDPBindError(addr); err != nil {
		procs, _ := hostcheck.UDPHolders(addr)
		if slices.ContainsFunc(procs, func(p hostcheck.Process) bool { return p.Comm == "isp-box" }) {
			add(OK, "sip port", "UDP %s is held by isp-box: the box is running", addr)
		} else {
			add(Fail, "sip port", "%v", err)
		}
	} else {
		add(OK, "sip port", "UDP %s is free", addr)
	}

	// The network mode's needs.
	switch cfg.Net.Mode {
	case netstack.Kernel:
		if fwd, err := readSysctl(o.Proc, "net/ipv4/ip_forward"); err == nil && fwd != "1" {
			add(OK, "kernel mode", "net.ipv4.ip_forward is %s: the box sets it to 1 at start (needs CAP_NET_ADMIN)", fwd)
		}
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			add(Fail, "kernel mode", "/dev/net/tun: %v: load the tun module (modprobe tun) or use [network] mode = userspace", err)
		} else {
			add(OK, "kernel mode", "/dev/net/tun is there")
		}
		if acct.uid != 0 && !hasCap(o.Proc, capNetAdmin) {
			add(Warn, "kernel mode", "user %s without CAP_NET_ADMIN cannot create the TUN device, routes or nftables rules: run it from the packaged unit with AmbientCapabilities=CAP_NET_ADMIN", acct.name)
		}
	default:
		rng, err := readSysctl(o.Proc, "net/ipv4/ping_group_range")
		lo, hi, ok := parseRange(rng)
		switch {
		case err != nil:
			add(Warn, "ping", "net.ipv4.ping_group_range: %v", err)
		case ok && acct.anyGID(lo, hi):
			add(OK, "ping", "net.ipv4.ping_group_range %q holds a group of %s: clients can ping the world", rng, acct.name)
		case acct.uid == 0 || o.User == "" && hasCap(o.Proc, capNetRaw):
			add(OK, "ping", "%s has CAP_NET_RAW: clients can ping the world", acct.name)
		default:
			add(Warn, "ping", "net.ipv4.ping_group_range is %q, outside every group of %s, so clients' pings to the world are refused "+
				"unless the box has CAP_NET_RAW (the packaged unit grants it); or: sysctl -w net.ipv4.ping_group_range=\"0 2147483647\" "+
				"(and in /etc/sysctl.d/ to keep it)", rng, acct.name)
		}
	}

	// The database.
	db := firstNonEmpty(o.Database, cfg.Box.Database, store.DefaultPath())
	if err := acct.dbWritable(db); err != nil {
		add(Fail, "database", "%v", err)
	} else {
		add(OK, "database", "%s is writable by %s", db, acct.name)
	}

	// The clock: a Pi has no RTC; TLS-less as the box is, call and
	// session records and registrations' expiry still need the time.
	if now := o.Now(); now.Year() < 2024 {
		add(Fail, "clock", "the clock says %s: set it (systemd-timesyncd, or chrony; a Raspberry Pi has no battery clock)", now.Format(time.DateOnly))
	} else {
		add(OK, "clock", "%s", now.UTC().Format(time.RFC3339))
	}
	return out
}

// acct is the service account the checks are made for.
type acct struct {
	name string
	uid  int
	gids []int
}

func account(name string) acct {
	if name == "" {
		a := acct{uid: os.Geteuid(), name: hostcheck.Me()}
		a.gids = append(a.gids, os.Getegid())
		if gs, err := os.Getgroups(); err == nil {
			a.gids = append(a.gids, gs...)
		}
		return a
	}
	a := acct{name: name, uid: -1}
	u, err := user.Lookup(name)
	if err != nil {
		return a
	}
	a.uid, _ = strconv.Atoi(u.Uid)
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			n, _ := strconv.Atoi(g)
			a.gids = append(a.gids, n)
		}
	}
	// The packaged unit adds SupplementaryGroups=dialout.
	return a
}

func (a acct) inGroup(gid int) bool { return slices.Contains(a.gids, gid) }

func (a acct) anyGID(lo, hi int) bool {
	for _, g := range a.gids {
		if g >= lo && g <= hi {
			return true
		}
	}
	return false
}

// canReadWrite applies the file's owner/group/other bits to the account
// (root passes), and says what would let it in.
func (a acct) canReadWrite(path string) (bool, string) {
	if a.uid == 0 {
		return true, ""
	}
	if a.uid < 0 {
		return false, "no such user; create it (the package does: user isp-box in group dialout)"
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, err.Error()
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true, ""
	}
	mode := fi.Mode().Perm()
	var bits fs.FileMode
	switch {
	case int(st.Uid) == a.uid:
		bits = mode >> 6
	case a.inGroup(int(st.Gid)):
		bits = mode >> 3
	default:
		bits = mode
	}
	if bits&6 == 6 {
		return true, ""
	}
	g := strconv.Itoa(int(st.Gid))
	if gr, err := user.LookupGroupId(g); err == nil {
		g = gr.Name
	}
	if mode&0o060 == 0o060 && g != "root" {
		return false, fmt.Sprintf("add it to group %s: usermod -aG %s %s (the packaged unit also sets SupplementaryGroups=dialout)", g, g, a.name)
	}
	return false, "make the device root:dialout 0660 (a udev rule GROUP=\"dialout\", MODE=\"0660\") and add the user to dialout"
}

func (a acct) dbWritable(path string) error {
	if a.uid == os.Geteuid() {
		return hostcheck.DatabaseWritable(path)
	}
	if d := filepath.Dir(path); hostcheck.ExistingParent(d) != d {
		return fmt.Errorf("%s does not exist: install -d -o %s -m 0750 %s (the package and the unit's StateDirectory= create it)", d, a.name, d)
	}
	dir := filepath.Dir(path)
	for _, f := range []string{path, dir} {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if ok, _ := a.canReadWrite(f); !ok {
			return fmt.Errorf("%s is not writable by %s (%s); fix: chown %s %s", f, a.name, hostcheck.Owner(f), a.name, f)
		}
	}
	return nil
}

func unixAccessFor(a acct, dir string) error {
	if ok, _ := a.canReadWrite(dir); !ok {
		return fmt.Errorf("user %s may not create lock files there (%s)", a.name, hostcheck.Owner(dir))
	}
	return nil
}

// procsNamed lists running processes whose comm is one of names.
func procsNamed(proc string, names ...string) []hostcheck.Process {
	dirs, _ := filepath.Glob(filepath.Join(proc, "[0-9]*"))
	var out []hostcheck.Process
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil {
			continue
		}
		c := strings.TrimSpace(string(b))
		if slices.Contains(names, c) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			out = append(out, hostcheck.Process{PID: pid, Comm: c})
		}
	}
	return out
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func readSysctl(proc, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(proc, "sys", name))
	return strings.Join(strings.Fields(string(b)), " "), err
}

func parseRange(s string) (lo, hi int, ok bool) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, e1 := strconv.Atoi(f[0])
	hi, e2 := strconv.Atoi(f[1])
	return lo, hi, e1 == nil && e2 == nil && lo <= hi
}

const (
	capNetAdmin = 12
	capNetRaw   = 13
)

// hasCap reports whether this process has capability bit in its
// effective set (/proc/self/status CapEff).
func hasCap(proc string, bit uint) bool {
	b, err := os.ReadFile(filepath.Join(proc, "self", "status"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<bit) != 0
		}
	}
	return false
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// ATA is a registered device: its peer name and the User-Agent it sent.
type ATA struct{ Peer, UserAgent string }

// ATAAdvice lists, for an ATA whose User-Agent it knows, the settings a
// modem line needs and where they are in the ATA's web page. A modem's
// carrier does not survive what helps speech: a codec other than G.711,
// echo cancellation and suppression, an adaptive jitter buffer, silence
// suppression, or a switch to fax mode on the answer tone.
func ATAAdvice(a ATA) []Finding {
	ua := strings.ToLower(a.UserAgent)
	check := "ata " + a.Peer
	switch {
	case strings.Contains(ua, "pap2"), strings.Contains(ua, "spa1"), strings.Contains(ua, "spa2"), strings.Contains(ua, "spa3"),
		strings.Contains(ua, "spa5"), strings.Contains(ua, "spa9"):
		// Linksys/Sipura/Cisco SPA firmware: Admin Login, advanced, Line 1 / Line 2 tabs.
		var out []Finding
		for _, s := range []string{
			"Line N > Audio Configuration: Preferred Codec G711u, Use Pref Codec Only yes (G.711 only: compressed codecs destroy modem signals)",
			"Line N > Audio Configuration: Echo Canc Enable no, Echo Canc Adapt Enable no, Echo Supp Enable no",
			"Line N > Audio Configuration: Silence Supp Enable no",
			"Line N > Audio Configuration: FAX Passthru Method NONE, FAX CED Detect Enable no, FAX CNG Detect Enable no, FAX Codec Symmetric yes",
			"Line N > Network Settings: Network Jitter Level low, Jitter Buffer Adjustment disable (a fixed, small buffer)",
			"Regional: Call Waiting Serv no on the modem's line (a beep drops the carrier)",
		} {
			out = append(out, Finding{Level: OK, Check: check, Msg: a.UserAgent + ": set in its web page, " + s})
		}
		return out
	case a.UserAgent == "":
		return []Finding{{Level: Warn, Check: check, Msg: "not registered, or no User-Agent: cannot say which settings it needs"}}
	}
	return []Finding{{Level: Warn, Check: check, Msg: a.UserAgent + ": unknown ATA; set it to G.711 only, no echo canceller or suppression, " +
		"no silence suppression, a low fixed jitter buffer, fax passthrough off"}}
}
