// Package rawtty opens a terminal the way a PC's serial port is used for a
// modem: raw, 8 data bits, no echo, no CR/LF mapping, no signals. The demo's
// client terminal and the real-pppd VM bridge both need it; the modem line
// manager sets its own port up through go.bug.st/serial.
package rawtty

import (
	"os"

	"golang.org/x/sys/unix"
)

// Open opens the tty at path read-write, without making it the controlling
// terminal, and puts it in raw mode.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	if err := MakeRaw(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// MakeRaw sets f's terminal to raw mode as cfmakeraw(3) does, and also
// clears CRTSCTS and sets CLOCAL: a pty has no modem-control lines. The
// speed is left alone (B0 would mean "drop DTR" to an emulated modem).
func MakeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			serr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS
		t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		serr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return serr
}
