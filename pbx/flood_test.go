package pbx

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/sipflood"
)

// A short flood of unauthenticated INVITEs, wrong-password REGISTERs and
// OPTIONS from 128 addresses: the ATA still registers and calls during
// it, memory stays bounded, and nothing is left behind after it (no
// handler, call or used nonce past its time). make bench-flood runs the
// long one against the isp-box binary and reports the numbers.
func TestFloodShort(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	box := startBox(t, testConfig(""), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lo := netip.MustParseAddr("127.0.0.1")
	callee, err := sipflood.NewUA(box.Addr(), lo, ispLine, secret)
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()
	caller, err := sipflood.NewUA(box.Addr(), lo, clientLine, secret)
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	for _, u := range []*sipflood.UA{callee, caller} {
		if err := u.Register(ctx, 3600); err != nil {
			t.Fatalf("%s before the flood: %v", u, err)
		}
	}

	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	}()
	type out struct {
		r   sipflood.Result
		err error
	}
	res := make(chan out, 1)
	go func() {
		r, err := sipflood.Run(ctx, sipflood.Config{Target: box.Addr(), Sources: 128, Duration: 4 * time.Second, Max: 400000, User: clientLine})
		res <- out{r, err}
	}()
	time.Sleep(500 * time.Millisecond)
	if err := caller.Register(ctx, 3600); err != nil {
		t.Errorf("ATA REGISTER during the flood: %v", err)
	}
	if err := caller.Call(ctx, "88567682", 300*time.Millisecond); err != nil {
		t.Errorf("ATA call during the flood: %v", err)
	}
	o := <-res
	close(stop)
	wg.Wait()
	if o.err != nil {
		t.Fatal(o.err)
	}
	st := box.EdgeStats()
	t.Logf("flood: %d requests (%d guesses) in %v, %d answers: %d bytes back for %d sent; peak heap in use %d MiB; box %+v",
		o.r.Sent, o.r.Guesses, o.r.Elapsed.Round(time.Millisecond), o.r.Answers, o.r.BytesIn, o.r.BytesOut, peak>>20, st)
	if o.r.Sent < 1000 {
		t.Fatalf("the flood sent only %d requests", o.r.Sent)
	}
	if o.r.BytesIn > o.r.BytesOut {
		t.Errorf("the flood got %d bytes back for %d sent", o.r.BytesIn, o.r.BytesOut)
	}
	if peak > 256<<20 {
		t.Errorf("peak heap in use %d MiB (box and flood together)", peak>>20)
	}
	if st.AuthFailures > uint64(guessBurst)+8*uint64(box.general().GuessRate)+8 {
		t.Errorf("%d guesses evaluated in a 4 s flood at %d/s", st.AuthFailures, box.general().GuessRate)
	}
	// nothing left behind
	deadline := time.Now().Add(10 * time.Second)
	for box.inflight.Load() != 0 || len(box.Calls()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the flood: %d handlers running, %d calls", box.inflight.Load(), len(box.Calls()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := caller.Call(ctx, "88567682", 100*time.Millisecond); err != nil {
		t.Errorf("ATA call after the flood: %v", err)
	}
}
