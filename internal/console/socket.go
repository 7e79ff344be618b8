package console

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SocketName is the file name of the control socket in its directory.
const SocketName = "isp-box.sock"

// DefaultSocketPath is where the daemon listens and the CLI connects unless
// told otherwise: under systemd's RuntimeDirectory= ($RUNTIME_DIRECTORY,
// /run/isp-box for the packaged unit), else /run/isp-box/isp-box.sock for
// root, $XDG_RUNTIME_DIR/isp-box/isp-box.sock for other users, and
// /tmp/isp-box-UID/isp-box.sock when XDG_RUNTIME_DIR is not set.
func DefaultSocketPath() string {
	if d, _, _ := strings.Cut(os.Getenv("RUNTIME_DIRECTORY"), ":"); d != "" {
		return filepath.Join(d, SocketName)
	}
	return defaultSocketPath(os.Geteuid(), os.Getenv("XDG_RUNTIME_DIR"))
}

// ServiceSocketPath is the socket of the packaged service (systemd's
// RuntimeDirectory=isp-box); members of the service's group may use it.
const ServiceSocketPath = "/run/isp-box/" + SocketName

// ClientSocketPath is the socket the CLI uses without -s: this user's own
// daemon's if one is there, else the system service's if it is there
// (so an admin in the isp-box group needs no -s), else this user's
// default (and the error then names it).
func ClientSocketPath() string {
	own := DefaultSocketPath()
	for _, p := range []string{own, ServiceSocketPath} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return p
		}
	}
	return own
}

func defaultSocketPath(uid int, xdg string) string {
	switch {
	case uid == 0:
		return filepath.Join("/run/isp-box", SocketName)
	case xdg != "":
		return filepath.Join(xdg, "isp-box", SocketName)
	default:
		return filepath.Join(os.TempDir(), "isp-box-"+strconv.Itoa(uid), SocketName)
	}
}

// SocketMode is the permission of the socket file: the daemon's user and
// group may connect (read endpoints); write endpoints also check the
// peer's uid.
const SocketMode = 0o660

// Listen creates the control socket at path. The directory is created
// (mode 0750) if missing and must be a real directory owned by this user or
// root, so that a directory planted in /tmp by someone else is refused. A
// socket file left by a daemon that died is removed, but only after a
// connection to it is refused: if a daemon answers, Listen fails and leaves
// the file alone. A file at path that is not a socket is never removed.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		path = DefaultSocketPath()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	return l, nil
}

func checkDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("console: %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := int(st.Uid); uid != os.Geteuid() && uid != 0 {
			return fmt.Errorf("console: %s belongs to uid %d, not to this user (%d)", dir, uid, os.Geteuid())
		}
	}
	return nil
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("console: %s exists and is not a socket; not removing it", path)
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("console: another isp-box is already serving at %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("console: %s exists and cannot be checked: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("console: removing stale socket: %w", err)
	}
	return nil
}
