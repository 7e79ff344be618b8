package hostcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// DatabaseWritable checks that this process may write the SQLite database
// at path and its directory (SQLite writes -wal and -shm files next to
// it). A database left by a run as root is the usual culprit; SQLite
// itself only says "unable to open database file (14)".
func DatabaseWritable(path string) error {
	// serve creates a missing directory: then its nearest existing
	// parent must be writable.
	dir := ExistingParent(filepath.Dir(path))
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("database directory %s is not writable by %s (%s): %s; fix: chown %s %s",
			dir, Me(), Owner(dir), errText(err), Me(), dir)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := unix.Access(f, unix.R_OK|unix.W_OK); err != nil {
			return fmt.Errorf("database %s is not writable by %s (%s, left by a run as another user?): %s; fix: chown %s %s*",
				f, Me(), Owner(f), errText(err), Me(), path)
		}
	}
	return nil
}

// ExistingParent is dir, or its nearest ancestor that exists.
func ExistingParent(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}

// Me names this process's user, "name (uid N)".
func Me() string {
	uid := os.Geteuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}

// Owner describes a file's owner, group and mode, "owned by root:root 0644".
func Owner(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return errText(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fi.Mode().String()
	}
	return fmt.Sprintf("owned by %s:%s %04o", userName(int(st.Uid)), groupName(int(st.Gid)), fi.Mode().Perm())
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// errText is an error without Go's "op path:" prefix.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
