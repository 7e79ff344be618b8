package lock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestFormat(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "/dev/ttyUSB0", 4242)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "LCK..ttyUSB0"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "      4242\n" {
		t.Errorf("contents %q, want HDB %q", b, "      4242\n")
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock still there after Release: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "TM.*"))
	if len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestLiveForeignLockRespected(t *testing.T) {
	dir := t.TempDir()
	// A live process other than us: a child sleep, as minicom would be.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("sleep: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	path := filepath.Join(dir, "LCK..ttyS0")
	foreign := []byte("     " + strconv.Itoa(cmd.Process.Pid) + "\n")
	if err := os.WriteFile(path, foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Acquire(dir, "/dev/ttyS0", os.Getpid())
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.PID != cmd.Process.Pid {
		t.Fatalf("Acquire over a live lock: %v, want LockedError pid %d", err, cmd.Process.Pid)
	}
	if b, _ := os.ReadFile(path); string(b) != string(foreign) {
		t.Errorf("foreign lock changed to %q", b)
	}
	// Our own pid through another Lock is live too.
	os.Remove(path)
	if _, err := Acquire(dir, "/dev/ttyS0", os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(dir, "/dev/ttyS0", os.Getpid()); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Acquire by the same pid: %v, want ErrLocked", err)
	}
}

func TestStaleLockRemoved(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("true: %v", err)
	}
	dead := cmd.Process.Pid // reaped: no such process now
	path := filepath.Join(dir, "LCK..ttyS1")
	for name, contents := range map[string][]byte{
		"ascii":   []byte("     " + strconv.Itoa(dead) + "\n"),
		"binary":  {byte(dead), byte(dead >> 8), byte(dead >> 16), byte(dead >> 24)},
		"garbage": []byte("junk"),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, contents, 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := Acquire(dir, "/dev/ttyS1", os.Getpid())
			if err != nil {
				t.Fatalf("stale lock not taken over: %v", err)
			}
			if pid, _ := ReadPID(path); pid != os.Getpid() {
				t.Errorf("lock holds %d, want %d", pid, os.Getpid())
			}
			l.Release()
		})
	}
}

func TestPathFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "ttyUSB7")
	os.WriteFile(target, nil, 0o644)
	link := filepath.Join(dir, "usb-FTDI_1234-if00-port0")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if got, want := Path("/var/lock", link), "/var/lock/LCK..ttyUSB7"; got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
}
