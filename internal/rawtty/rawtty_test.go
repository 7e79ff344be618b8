package rawtty

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/creack/pty"
)

// TestRawPassesEveryByte: after MakeRaw every byte value crosses the pty
// unchanged and nothing is echoed back.
func TestRawPassesEveryByte(t *testing.T) {
	master, slave, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer master.Close()
	defer slave.Close()
	f, err := Open(slave.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	if _, err := master.Write(all); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 256)
	if _, err := io.ReadFull(f, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Fatalf("bytes changed crossing the pty:\n got %x\nwant %x", got, all)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(master, b); err != nil || b[0] != 'x' {
		t.Fatalf("read %q, %v; want x (and no echo before it)", b, err)
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := Open("/nonexistent/tty"); !os.IsNotExist(err) {
		t.Fatalf("Open of a missing path: %v, want not-exist", err)
	}
}
