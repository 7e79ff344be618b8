package hostcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReadHint says why this process may not read path and what to do, after
// a read that failed with err; "" when err is not a permission problem.
// The usual case is a config installed by hand as root:root 0640 while
// the service runs as its own user: the read then fails with a bare
// "permission denied" (and systemd's ExecStartPre with it).
func ReadHint(path string, err error) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	abs, aerr := filepath.Abs(path)
	if aerr != nil {
		abs = path
	}
	// A directory on the way that this user may not enter.
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		if unix.Access(d, unix.X_OK) != nil {
			return fmt.Sprintf("user %s may not enter directory %s (%s); fix: chmod o+x %s, or give the directory to a group of %s",
				Me(), d, Owner(d), d, Me())
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	fi, serr := os.Stat(abs)
	if serr != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	own := Owner(abs)
	switch {
	case int(st.Uid) == os.Geteuid():
		return fmt.Sprintf("%s is %s; fix: chmod u+r %s", abs, own, abs)
	case inGroup(int(st.Gid)):
		return fmt.Sprintf("%s is %s; fix: chmod g+r %s", abs, own, abs)
	}
	g := groupName(os.Getegid())
	return fmt.Sprintf("%s is %s and user %s is neither its owner nor in group %s; fix: chgrp %s %s && chmod g+r %s (the Debian package installs it root:isp-box 0640)",
		abs, own, Me(), groupName(int(st.Gid)), g, abs, abs)
}

// inGroup reports whether this process has group gid.
func inGroup(gid int) bool {
	if os.Getegid() == gid {
		return true
	}
	gs, err := os.Getgroups()
	if err != nil {
		return false
	}
	return slices.Contains(gs, gid)
}
