package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// A picked port stays reserved until the test ends: 200 picks from 10,000
// ports are all different (without the reservation two of them are the
// same in most runs), and another open file cannot take a port's lock.
func TestFreeUDPPortBelowEphemeralReserved(t *testing.T) {
	seen := map[int]bool{}
	var last int
	for range 200 {
		p := FreeUDPPortBelowEphemeral(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p], last = true, p
	}
	f, err := os.Open(filepath.Join(portLockDir, strconv.Itoa(last)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("lock of a reserved port: %v, want EWOULDBLOCK", err)
	}
}
