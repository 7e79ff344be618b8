// Package lock implements UUCP (HDB) lock files for serial devices, the
// convention mgetty, pppd, minicom and cu share: /var/lock/LCK..ttyUSB0 holds
// the owner's PID as ten right-aligned ASCII digits and a newline (mgetty
// locks.c, LOCKS_BINARY 0). A lock whose process is gone is stale and removed;
// a live one is respected.
package lock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned (wrapped in *LockedError) when another live process
// holds the device.
var ErrLocked = errors.New("lock: device is locked")

// LockedError says who holds a lock.
type LockedError struct {
	Path string
	PID  int
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("lock: %s held by live process %d", e.Path, e.PID)
}

// Unwrap makes errors.Is(err, ErrLocked) work.
func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is a held lock file.
type Lock struct {
	path string
	pid  int
}

// Path returns the lock file for device in dir: "LCK.." plus the base name of
// the device after following symlinks, so /dev/serial/by-id/usb-... and
// /dev/ttyUSB0 share one lock, as pppd and mgetty resolve them.
func Path(dir, device string) string {
	if real, err := filepath.EvalSymlinks(device); err == nil {
		device = real
	}
	return filepath.Join(dir, "LCK.."+filepath.Base(device))
}

// Acquire takes the lock for device in dir on behalf of pid (normally
// os.Getpid()). It removes a stale lock (its process does not exist) and
// returns a *LockedError when a live process holds it, including pid itself
// holding it through another Lock.
func Acquire(dir, device string, pid int) (*Lock, error) {
	path := Path(dir, device)
	// Create atomically: write a temp file, then link(2) it to the lock
	// name; link fails with EEXIST if someone else got there first
	// (mgetty locks.c, the HDB way).
	tmp, err := os.CreateTemp(dir, "TM.")
	if err != nil {
		return nil, fmt.Errorf("lock: temp file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%10d\n", pid); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("lock: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("lock: chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("lock: close %s: %w", tmp.Name(), err)
	}
	for attempt := 0; attempt < 2; attempt++ {
		err := os.Link(tmp.Name(), path)
		if err == nil {
			return &Lock{path: path, pid: pid}, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lock: %w", err)
		}
		holder, rerr := ReadPID(path)
		if rerr != nil {
			if errors.Is(rerr, os.ErrNotExist) {
				continue // released between link and read
			}
			// Unreadable or empty: mgetty treats a lock it cannot
			// parse as stale.
			holder = 0
		}
		if holder > 0 && Alive(holder) {
			return nil, &LockedError{Path: path, PID: holder}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("lock: removing stale %s (pid %d): %w", path, holder, err)
		}
	}
	return nil, fmt.Errorf("lock: %s: lost the race twice", path)
}

// ReadPID reads the PID in a lock file: the ASCII HDB format, or the old
// 4-byte binary format that some programs still write.
func ReadPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return ParsePID(b)
}

// ParsePID parses lock file contents.
func ParsePID(b []byte) (int, error) {
	if len(b) == 4 && !isASCIIDigits(b) {
		// Binary lock: a native-endian int (Linux: little-endian).
		return int(int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)), nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("lock: bad contents %q: %w", b, err)
	}
	return n, nil
}

func isASCIIDigits(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && c != ' ' && c != '\n' {
			return false
		}
	}
	return true
}

// Alive reports whether process pid exists: kill(pid, 0) succeeds or fails
// with EPERM (it exists but belongs to someone else); ESRCH means stale.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// Path returns the lock file's path.
func (l *Lock) Path() string { return l.path }

// Release removes the lock file if it still holds our PID.
func (l *Lock) Release() error {
	if l == nil {
		return nil
	}
	pid, err := ReadPID(l.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("lock: release %s: %w", l.path, err)
	}
	if pid != l.pid {
		return fmt.Errorf("lock: %s now held by %d, not removing", l.path, pid)
	}
	if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lock: release: %w", err)
	}
	return nil
}
