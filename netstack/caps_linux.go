package netstack

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// capNetAdmin is CAP_NET_ADMIN's bit (linux/capability.h).
const capNetAdmin = 12

// hasCap reports whether the effective capability set in a
// /proc/<pid>/status text has bit cap.
func hasCap(status string, cap uint) (bool, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, fmt.Errorf("CapEff %q: %w", v, err)
		}
		return mask&(1<<cap) != 0, nil
	}
	return false, fmt.Errorf("no CapEff line")
}

// errNoCapNetAdmin is the one line a user sees when asking for kernel mode
// without the privilege.
var errNoCapNetAdmin = fmt.Errorf("netstack: kernel mode needs CAP_NET_ADMIN (run as root, or `setcap cap_net_admin+ep` the binary); without it use mode = userspace")

func checkCapNetAdmin() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("netstack: kernel mode: %w", err)
	}
	ok, err := hasCap(string(b), capNetAdmin)
	if err != nil {
		return fmt.Errorf("netstack: kernel mode: /proc/self/status: %w", err)
	}
	if !ok {
		return errNoCapNetAdmin
	}
	return nil
}
