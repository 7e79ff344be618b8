package modem

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/isp-box/isp-box/modem/lock"
)

// TestWaitsEndOnReloadAndShutdown runs a line whose port cannot be had (the
// device is missing, or another program holds its lock) under synctest:
// while the line waits (a 30 s open backoff, a 30 s lock retry), a reload
// with a corrected device is applied at once, not when the wait runs out,
// and shutdown returns at once. Fake time must not move at all.
func TestWaitsEndOnReloadAndShutdown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string, cfg *LineConfig)
		// waiting checks the line is in the wait before the reload.
		waiting func(st LineStatus) bool
	}{
		{
			name:  "open backoff",
			setup: func(t *testing.T, dir string, cfg *LineConfig) { cfg.Lock = false },
			waiting: func(st LineStatus) bool {
				return st.Errors == 1 && strings.Contains(st.LastError, "missing0")
			},
		},
		{
			name: "foreign lock",
			setup: func(t *testing.T, dir string, cfg *LineConfig) {
				// pid 1 is alive, and it is not us.
				lockPath := lock.Path(dir, cfg.Device)
				if err := os.WriteFile(lockPath, []byte(fmt.Sprintf("%10d\n", 1)), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			waiting: func(st LineStatus) bool { return st.State == "opening" && st.Errors == 0 },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				cfg := DefaultLineConfig("ttyUSB0")
				cfg.Device, cfg.LockDir = filepath.Join(dir, "missing0"), dir
				tc.setup(t, dir, &cfg)
				l, err := NewLine(cfg, LineOptions{Log: testLog()})
				if err != nil {
					t.Fatal(err)
				}
				l.t.backoffMin, l.t.backoffMax, l.t.lockRetry = 30*time.Second, 30*time.Second, 30*time.Second
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { defer close(done); l.Run(ctx) }()
				synctest.Wait()
				if st := l.Status(); !tc.waiting(st) {
					t.Fatalf("not waiting as expected: %+v", st)
				}
				start := time.Now()

				next := cfg
				next.Device = filepath.Join(dir, "missing1")
				next.Lock = false
				l.Reload(next)
				synctest.Wait()
				st := l.Status()
				if st.Device != next.Device || !strings.Contains(st.LastError, "missing1") {
					t.Errorf("reload not applied during the wait: device %q, last error %q", st.Device, st.LastError)
				}
				if st.Pending != "" {
					t.Errorf("Pending = %q after the reload was applied", st.Pending)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("reload applied after %s of fake time, want at once", d)
				}

				cancel()
				synctest.Wait()
				select {
				case <-done:
				default:
					t.Fatal("Run did not return on shutdown during the backoff")
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("shutdown took %s of fake time, want none", d)
				}
				if st := l.Status(); st.State != "down" {
					t.Errorf("state %q after Run, want down", st.State)
				}
			})
		})
	}
}

// TestReloadPendingDuringCall: a reload during a call is not applied under
// it, and Status says it is pending until the call ends.
func TestReloadPendingDuringCall(t *testing.T) {
	r := newRig(t, nil, nil)
	r.waitState("idle")
	r.dte.Send("ATDT" + ispNumber + "\r")
	r.waitState("connected")
	cfg := r.line.config()
	cfg.LoginPrompt = "reloaded login: "
	r.line.Reload(cfg)
	if st := r.line.Status(); !strings.Contains(st.Pending, "when the call ends") {
		t.Errorf("Pending during a call = %q", st.Pending)
	}
	r.dte.Expect("isp!login: ")
	r.isp.DropCarrier()
	r.waitState("idle")
	if st := r.line.Status(); st.Pending != "" {
		t.Errorf("Pending after the call = %q", st.Pending)
	}
}

// TestShutdownDuringHangup: a line with `local` hangs up with guard times
// around +++ (1.1 s each); shutdown during them returns without serving
// them out (they were plain sleeps, 2.2 s at every hang-up).
func TestShutdownDuringHangup(t *testing.T) {
	r := newRig(t, func(c *LineConfig) { c.Local = true }, nil)
	r.waitState("idle")
	r.dial()
	r.dte.Expect("isp!login: ")
	r.isp.DropCarrier()
	r.waitState("hangingup")
	start := time.Now()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	// The guard times alone are 2.2 s; a prompt return is far below.
	if d := time.Since(start); d > time.Second {
		t.Errorf("shutdown during the hang-up took %s", d)
	}
}
