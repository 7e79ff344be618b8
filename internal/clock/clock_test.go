package clock

import (
	"testing"
	"testing/synctest"
	"time"
)

// The real clock's timer fires, stops and resets as *time.Timer does: the
// modem line's waits and the PPP session's restart timer rely on all three.
func TestRealTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c Clock = Real{}
		start := c.Now()
		tm := c.NewTimer(3 * time.Second)
		if got := (<-tm.C()).Sub(start); got != 3*time.Second {
			t.Fatalf("fired after %v, want 3s", got)
		}
		if tm.Stop() {
			t.Fatal("Stop of a fired timer reported it running")
		}
		if tm.Reset(time.Second) {
			t.Fatal("Reset of a fired timer reported it running")
		}
		if !tm.Reset(2 * time.Second) {
			t.Fatal("Reset of a running timer reported it stopped")
		}
		if got := (<-tm.C()).Sub(start); got != 5*time.Second {
			t.Fatalf("reset timer fired at %v, want 5s", got)
		}
		tm = c.NewTimer(time.Second)
		if !tm.Stop() {
			t.Fatal("Stop of a running timer reported it stopped")
		}
		time.Sleep(2 * time.Second)
		select {
		case <-tm.C():
			t.Fatal("a stopped timer fired")
		default:
		}
	})
}
