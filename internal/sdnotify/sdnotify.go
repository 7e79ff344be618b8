// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): newline-separated VAR=value assignments in one datagram
// to the unix socket named by $NOTIFY_SOCKET ("@name" is in the abstract
// namespace). It is small enough to write here rather than pull in a
// library; the protocol is the one documented in systemd's sd_notify(3) and
// implemented by its src/libsystemd/sd-daemon/sd-daemon.c.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notifier sends to one socket. The zero Notifier (and a nil one) sends
// nothing: not started by systemd.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns the notifier of $NOTIFY_SOCKET, or nil when the process
// was not started with Type=notify.
func FromEnv() *Notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return nil // sd_notify(3) accepts only these (and vsock, not used here)
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Enabled reports whether there is anyone to tell.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends the assignments as one datagram ("READY=1", "STATUS=...").
func (n *Notifier) Send(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") {
			return fmt.Errorf("sdnotify: %q is not VAR=value", a)
		}
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Reloading is the message that starts a reload (systemd ≥ 253 wants
// MONOTONIC_USEC with it; older ones ignore it). READY=1 ends it.
func Reloading() []string {
	return []string{"RELOADING=1", "MONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10)}
}

// WatchdogInterval is how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC (as sd_watchdog_enabled(3) advises), or 0 when the
// watchdog is off or meant for another process ($WATCHDOG_PID).
func WatchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}
