package pppdvm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// socketPair returns the two ends of a unix stream socketpair as conns,
// the same kind of socket the VM's serial line is.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "sp")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// TestBridgeToPTY joins a socket (the VM's serial line) to a real pty's
// slave, as the chat-mode e2e test joins the VM to the emulated modem's
// pty, and checks raw mode and both directions with every byte value.
func TestBridgeToPTY(t *testing.T) {
	master, slave, err := pty.Open()
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	defer master.Close()
	// The bridge opens the slave by path, as it would the modem's. Ours
	// stays open (unread) so that the master never sees EIO meanwhile.
	defer slave.Close()
	slavePath := slave.Name()

	host, guest := socketPair(t)
	v := &VM{serial: &gatedConn{UnixConn: host}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- v.BridgeToPTY(ctx, slavePath) }()

	// guest → pty: all 256 byte values arrive unchanged at the master
	// (no CR/LF mapping, no OPOST), and nothing is echoed back.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	if _, err := guest.Write(all); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(all))
	if err := readFullTimeout(master, got, 10*time.Second); err != nil {
		t.Fatalf("reading the pty master: %v", err)
	}
	if !bytes.Equal(got, all) {
		t.Errorf("guest→pty bytes changed:\n got % x\nwant % x", got, all)
	}

	// pty → guest: the same, the other way.
	if _, err := master.Write(all); err != nil {
		t.Fatal(err)
	}
	guest.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(guest, got); err != nil {
		t.Fatalf("reading the guest side: %v", err)
	}
	if !bytes.Equal(got, all) {
		t.Errorf("pty→guest bytes changed:\n got % x\nwant % x", got, all)
	}

	// The line discipline is raw (checked on the master: same termios).
	tio, err := unix.IoctlGetTermios(int(master.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&(unix.ECHO|unix.ICANON|unix.ISIG) != 0 || tio.Iflag&unix.ICRNL != 0 || tio.Oflag&unix.OPOST != 0 {
		t.Errorf("pty not raw: lflag %#x iflag %#x oflag %#x", tio.Lflag, tio.Iflag, tio.Oflag)
	}
	// No echo: what the master wrote does not come back to it. A marker
	// sent from the guest side must be the next byte the master reads.
	if _, err := guest.Write([]byte{0xaa}); err != nil {
		t.Fatal(err)
	}
	if err := readFullTimeout(master, got[:1], 10*time.Second); err != nil || got[0] != 0xaa {
		t.Errorf("after the master's write, it read % x (%v), want only the marker aa: echo?", got[:1], err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("BridgeToPTY after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("BridgeToPTY did not return after cancel")
	}
	// The VM's socket stays usable after the bridge.
	host.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := guest.Write([]byte{0x7e}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(host, got[:1]); err != nil || got[0] != 0x7e {
		t.Errorf("serial socket after the bridge: %v % x", err, got[:1])
	}
}

// readFullTimeout reads len(b) bytes from f or fails after d. creack/pty's
// master is a blocking file: deadlines do not work on it.
func readFullTimeout(f *os.File, b []byte, d time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(f, b)
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		f.Close() // unblocks the read, ends the test's use of the pty
		return errors.New("timed out")
	}
}

func TestBridgeToPTYMissing(t *testing.T) {
	host, _ := socketPair(t)
	v := &VM{serial: &gatedConn{UnixConn: host}}
	if err := v.BridgeToPTY(context.Background(), "/dev/pts/does-not-exist"); err == nil {
		t.Fatal("BridgeToPTY on a missing pty: no error")
	}
}

// TestSerialGate: bytes written to the guest before it has sent anything
// are dropped (a line to a port nobody has open), later ones pass.
func TestSerialGate(t *testing.T) {
	host, guest := socketPair(t)
	g := &gatedConn{UnixConn: host}
	if n, err := g.Write([]byte("early")); n != 5 || err != nil {
		t.Fatalf("early write: %d %v, want 5 <nil>", n, err)
	}
	if _, err := guest.Write([]byte{0x7e}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	g.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := g.Read(b); n != 1 || err != nil {
		t.Fatalf("read: %d %v", n, err)
	}
	if _, err := g.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	guest.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := guest.Read(b)
	if err != nil || string(b[:n]) != "late" {
		t.Errorf("guest read %q %v, want only %q (the early write dropped)", b[:n], err, "late")
	}
	if d := g.dropped.Load(); d != 5 {
		t.Errorf("dropped %d bytes, want 5", d)
	}
}

// TestWaitSerial: WaitSerial returns once the guest has written, and the
// bytes it read come out of the next Read; it honours ctx.
func TestWaitSerial(t *testing.T) {
	host, guest := socketPair(t)
	v := &VM{serial: &gatedConn{UnixConn: host}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := v.WaitSerial(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitSerial with nothing sent: %v, want the deadline", err)
	}
	if _, err := guest.Write([]byte{0x7e, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := v.WaitSerial(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := guest.Write([]byte{0x7d}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	b := make([]byte, 1)
	host.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < 3 {
		n, err := v.Serial().Read(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b[:n]...)
	}
	if !bytes.Equal(got, []byte{0x7e, 0xff, 0x7d}) {
		t.Errorf("read % x, want 7e ff 7d", got)
	}
	if _, err := v.Serial().Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	guest.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(guest, b); err != nil || b[0] != 1 {
		t.Errorf("write after WaitSerial did not pass the gate: %v % x", err, b)
	}
}

// TestSerialCloseKeepsWrittenBytes: Close of the host side fails later
// reads and writes and unblocks a pending read, but what was written just
// before still reaches the guest.
func TestSerialCloseKeepsWrittenBytes(t *testing.T) {
	host, guest := socketPair(t)
	g := &gatedConn{UnixConn: host}
	g.open.Store(true)
	readErr := make(chan error, 1)
	go func() {
		_, err := g.Read(make([]byte, 1))
		readErr <- err
	}()
	if _, err := g.Write([]byte("term-ack")); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	if _, err := g.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	b := make([]byte, 8)
	guest.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(guest, b); err != nil || string(b) != "term-ack" {
		t.Errorf("guest read %q %v after the host's Close, want %q", b, err, "term-ack")
	}
}
