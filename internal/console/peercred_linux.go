package console

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred reads SO_PEERCRED of a unix socket connection: the uid, gid and
// pid of the process that connected, as the kernel saw them at connect(2).
func peerCred(c net.Conn) (Cred, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Cred{}, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, false
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cerr != nil {
		return Cred{}, false
	}
	return Cred{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}, true
}
