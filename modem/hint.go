package modem

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// openHint says what to do about a serial port that does not open, for
// the errors a new install meets: the service user is not in the
// device's group (dialout on Debian), or the adapter is not there (not
// plugged in, renamed: /dev/serial/by-id names survive re-plugging).
// ModemManager and brltty grab fresh ttyUSB/ttyACM ports on Debian and
// Raspberry Pi OS, which looks like a modem that never answers.
func openHint(path string, err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission):
		who := strconv.Itoa(os.Geteuid())
		if u, e := user.LookupId(who); e == nil {
			who = u.Username
		}
		group, owner, mode := "", "", fs.FileMode(0)
		if fi, e := os.Stat(path); e == nil {
			mode = fi.Mode().Perm()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				group, owner = strconv.Itoa(int(st.Gid)), strconv.Itoa(int(st.Uid))
				if g, e := user.LookupGroupId(group); e == nil {
					group = g.Name
				}
				if u, e := user.LookupId(owner); e == nil {
					owner = u.Username
				}
			}
		}
		if group != "" && group != "root" && mode&0o060 == 0o060 {
			return fmt.Sprintf(" (user %s is not allowed to open it: add it to group %s, e.g. usermod -aG %s %s, then restart the box; isp-box doctor checks this)",
				who, group, group, who)
		}
		// Serial ports are root:dialout 0660 on Debian; anything else
		// was changed (or is not a serial port udev knows).
		return fmt.Sprintf(" (user %s is not allowed to open it, and the device, %s:%s %04o, gives its group no access: "+
			"make it root:dialout 0660, e.g. a udev rule with GROUP=\"dialout\", MODE=\"0660\", and add %s to group dialout; isp-box doctor checks this)",
			who, owner, group, mode, who)
	case errors.Is(err, fs.ErrNotExist):
		h := " (is the adapter plugged in? a /dev/serial/by-id/... path survives re-plugging; see isp-box doctor"
		if strings.Contains(path, "ttyUSB") || strings.Contains(path, "ttyACM") {
			h += "; ModemManager or brltty may have taken or renamed it"
		}
		return h + ")"
	}
	return ""
}

// procComm is the name of the program running as pid ("" if unknown).
func procComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
