// Package hostcheck looks at the machine the box runs on: who holds a
// port, whether a file is writable by this process, the groups of a
// device. `isp-box serve` uses it to turn a bare errno into what to do,
// and `isp-box doctor` to check a machine before the box runs on it.
package hostcheck

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Process is a process found holding something.
type Process struct {
	PID  int
	Comm string // /proc/PID/comm: the program's name
}

func (p Process) String() string {
	if p.Comm == "" {
		return fmt.Sprintf("pid %d", p.PID)
	}
	return fmt.Sprintf("%s (pid %d)", p.Comm, p.PID)
}

// Comm is the name of the program running as pid ("" if unknown).
func Comm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// UDPHolders lists the processes with a UDP socket bound to addr's port
// (on addr's address or the wildcard), from /proc/net/udp{,6} and the
// processes' fd tables. Without root only this user's processes can be
// seen: the socket is then found but no process (nil, true).
func UDPHolders(addr netip.AddrPort) (procs []Process, inUse bool) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		for _, ino := range boundInodes(f, addr) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil, false
	}
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range pids {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil || pid == os.Getpid() {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
				procs = append(procs, Process{PID: pid, Comm: Comm(pid)})
				break
			}
		}
	}
	return procs, true
}

// udpOwners names the users owning UDP sockets bound to addr's port.
func udpOwners(addr netip.AddrPort) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		for _, uid := range boundColumn(f, addr, 7) {
			name := uid
			if u, err := user.LookupId(uid); err == nil {
				name = u.Username
			}
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

func boundInodes(path string, want netip.AddrPort) []string { return boundColumn(path, want, 9) }

// boundColumn reads column col (7 uid, 9 inode) of one /proc/net/udp-style table: "sl local_address
// rem_address st ... inode", addresses as hex (network order per 32-bit
// word, host-endian) and ports as big-endian hex.
func boundColumn(path string, want netip.AddrPort, col int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 {
			continue
		}
		host, port, ok := strings.Cut(fs[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil || uint16(p) != want.Port() {
			continue
		}
		a, ok := procAddr(host)
		if !ok {
			continue
		}
		w := want.Addr().Unmap()
		if a.IsUnspecified() || w.IsUnspecified() || a.Unmap() == w {
			out = append(out, fs[col])
		}
	}
	return out
}

// procAddr decodes /proc/net's hex address: each 32-bit word is in the
// host's byte order (little-endian on every Linux the box runs on).
func procAddr(h string) (netip.Addr, bool) {
	raw := make([]byte, 0, 16)
	for i := 0; i+8 <= len(h); i += 8 {
		w, err := strconv.ParseUint(h[i:i+8], 16, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		raw = append(raw, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	a, ok := netip.AddrFromSlice(raw)
	return a, ok
}

// UDPBindError explains why addr cannot be bound for UDP, or returns nil
// if it can (the socket is closed again at once).
func UDPBindError(addr netip.AddrPort) error {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err == nil {
		c.Close()
		return nil
	}
	return ExplainBind(addr, err)
}

// ExplainBind turns a bind error on the SIP port into what to do.
func ExplainBind(addr netip.AddrPort, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		procs, _ := UDPHolders(addr)
		who := "another program"
		if uids := udpOwners(addr); len(uids) > 0 {
			// Without root, other users' processes are not visible; the
			// socket's owner is (asterisk's, in the usual migration).
			who = "a program of user " + strings.Join(uids, ", ")
			for _, u := range uids {
				if strings.HasPrefix(u, "asterisk") {
					who += " (Asterisk is still running? stop it: systemctl disable --now asterisk)"
				}
			}
		}
		if len(procs) > 0 {
			names := make([]string, len(procs))
			for i, p := range procs {
				names[i] = p.String()
			}
			who = strings.Join(names, ", ")
		}
		hint := ""
		for _, p := range procs {
			if strings.HasPrefix(p.Comm, "asterisk") {
				hint = "; Asterisk is still running: stop it (systemctl disable --now asterisk)"
			}
		}
		if len(procs) == 0 && !strings.Contains(who, "Asterisk") {
			hint = fmt.Sprintf("; Asterisk still running? (as root, ss -lunp 'sport = :%d' shows which program)", addr.Port())
		} else if hint == "" {
			hint = "; stop it or set udpbindaddr in [general] to another address or port"
		}
		return fmt.Errorf("UDP %s is in use by %s%s: %w", addr, who, hint, syscall.EADDRINUSE)
	case errors.Is(err, syscall.EACCES) && addr.Port() < 1024:
		return fmt.Errorf("UDP %s: a port below 1024 needs root or CAP_NET_BIND_SERVICE (the packaged unit grants it): %w", addr, syscall.EACCES)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("UDP %s: no interface of this machine has the address %s (udpbindaddr in [general]): %w", addr, addr.Addr(), syscall.EADDRNOTAVAIL)
	}
	return fmt.Errorf("UDP %s: %w", addr, err)
}
