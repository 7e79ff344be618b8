// Package hayestest drives an emulated modem from the computer's side in
// tests: a DTE is the caller's terminal program on the modem's pty.
package hayestest

import (
	"bytes"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// DTE is a terminal on a modem's tty. Expect keeps what it read past the
// text it waited for, for the next Expect.
type DTE struct {
	// Timeout bounds each Expect; Open sets 20 s (rings and training on a
	// loaded machine take a while).
	Timeout time.Duration

	t   testing.TB
	f   *os.File
	buf []byte
}

// Open opens the tty at path; it is closed when the test ends.
func Open(t testing.TB, path string) *DTE {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return &DTE{Timeout: 20 * time.Second, t: t, f: f}
}

// File is the open tty, for what a test does beyond typing (deadlines,
// termios, closing it to hang up the way a crashed program would).
func (d *DTE) File() *os.File { return d.f }

// Send writes s as typed.
func (d *DTE) Send(s string) {
	d.t.Helper()
	if _, err := d.f.WriteString(s); err != nil {
		d.t.Fatalf("write %q: %v", s, err)
	}
}

// Expect reads until want appears and returns everything up to and
// including it; the rest stays buffered.
func (d *DTE) Expect(want string) string {
	d.t.Helper()
	deadline := time.Now().Add(d.Timeout)
	b := make([]byte, 1024)
	for {
		if i := bytes.Index(d.buf, []byte(want)); i >= 0 {
			out := string(d.buf[:i+len(want)])
			d.buf = d.buf[i+len(want):]
			return out
		}
		d.f.SetReadDeadline(deadline)
		n, err := d.f.Read(b)
		d.buf = append(d.buf, b[:n]...)
		if err != nil {
			d.t.Fatalf("waiting for %q: %v; got %q", want, err, d.buf)
		}
	}
}

// Chat runs a script of send and expect pairs, as chat(8) does: it sends
// each pair's first string and waits for its second. An empty string sends
// or waits for nothing.
func (d *DTE) Chat(script ...string) {
	d.t.Helper()
	if len(script)%2 != 0 {
		d.t.Fatalf("chat script %q: a send without its expect", script)
	}
	for i := 0; i < len(script); i += 2 {
		if script[i] != "" {
			d.Send(script[i])
		}
		if script[i+1] != "" {
			d.Expect(script[i+1])
		}
	}
}

// OpenPTY creates a pty and returns a DTE on its master side and the path
// of its slave: for a line that is itself the modem (a virtual modem line
// opens the slave as its serial port), the test is the computer at the
// other end of the null-modem cable. Both are closed when the test ends.
func OpenPTY(t testing.TB) (*DTE, string) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0) // unlockpt
	}
	if err != nil {
		unix.Close(fd)
		t.Fatalf("pty: %v", err)
	}
	f := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { f.Close() })
	return &DTE{Timeout: 20 * time.Second, t: t, f: f}, "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
}

// SetDTR raises or drops DTR on a DTE made by OpenPTY. A pty has no
// modem-control lines; the POSIX way is output speed B0, and a termios
// change on the master applies to the slave's tty, where the line sees it.
func (d *DTE) SetDTR(on bool) {
	d.t.Helper()
	rc, err := d.f.SyscallConn()
	if err != nil {
		d.t.Fatal(err)
	}
	var ierr error
	rc.Control(func(fd uintptr) {
		var tio *unix.Termios
		tio, ierr = unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if ierr != nil {
			return
		}
		speed := uint32(unix.B38400)
		if !on {
			speed = unix.B0
		}
		tio.Cflag = tio.Cflag&^unix.CBAUD | speed
		tio.Ispeed, tio.Ospeed = 0, 0
		ierr = unix.IoctlSetTermios(int(fd), unix.TCSETS, tio)
	})
	if ierr != nil {
		d.t.Fatalf("DTR %v: %v", on, ierr)
	}
}
