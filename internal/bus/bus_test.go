package bus_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isp-box/isp-box/internal/bus"
)

// tick is a test event carrying who published it and its own counter.
type tick struct {
	From int
	N    int
}

func (tick) Kind() string { return "test.tick" }

// other is a second event type for filters and On.
type other struct{ N int }

func (other) Kind() string { return "test.other" }

func seqs(envs []bus.Envelope) []uint64 {
	out := make([]uint64, len(envs))
	for i, e := range envs {
		out[i] = e.Seq
	}
	return out
}

// collect reads n envelopes from s or fails after a generous timeout.
func collect(t *testing.T, s *bus.Sub, n int) []bus.Envelope {
	t.Helper()
	out := make([]bus.Envelope, 0, n)
	timeout := time.After(60 * time.Second)
	for len(out) < n {
		select {
		case env, ok := <-s.C():
			if !ok {
				t.Fatalf("%s: channel closed after %d of %d events", s.Name(), len(out), n)
			}
			out = append(out, env)
		case <-timeout:
			t.Fatalf("%s: got %d of %d events", s.Name(), len(out), n)
		}
	}
	return out
}

// TestTotalOrder publishes from several goroutines and checks that every
// subscriber, lossy or reliable, sees one and the same order, that sequence
// numbers are gapless, and that each publisher's own events keep their order.
func TestTotalOrder(t *testing.T) {
	const publishers, each = 4, 2000
	b := bus.New(nil)
	lossy := b.Subscribe("lossy", publishers*each, nil)
	defer lossy.Close()
	rel := b.SubscribeReliable("reliable", nil)
	defer rel.Close()
	rel2 := b.SubscribeReliable("reliable2", nil)
	defer rel2.Close()

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for n := range each {
				b.Publish(tick{From: p, N: n})
			}
		})
	}
	var got [3][]bus.Envelope
	var rwg sync.WaitGroup
	for i, s := range []*bus.Sub{lossy, rel, rel2} {
		rwg.Go(func() { got[i] = collect(t, s, publishers*each) })
	}
	wg.Wait()
	rwg.Wait()
	if t.Failed() {
		return
	}
	for i := range got {
		for j, env := range got[i] {
			if env.Seq != uint64(j+1) {
				t.Fatalf("subscriber %d: event %d has seq %d, want %d", i, j, env.Seq, j+1)
			}
		}
		next := make([]int, publishers)
		for _, env := range got[i] {
			tk := env.Event.(tick)
			if tk.N != next[tk.From] {
				t.Fatalf("subscriber %d: publisher %d event %d arrived when %d was expected", i, tk.From, tk.N, next[tk.From])
			}
			next[tk.From]++
		}
	}
	if d := cmp.Diff(seqs(got[0]), seqs(got[1])); d != "" {
		t.Errorf("lossy and reliable orders differ (-lossy +reliable):\n%s", d)
	}
	for j := range got[1] {
		if got[1][j].Event != got[2][j].Event {
			t.Fatalf("reliable subscribers differ at %d: %v vs %v", j, got[1][j].Event, got[2][j].Event)
		}
	}
}

// TestSlowLossyNeverBlocks: a subscriber that never reads must not stall
// Publish; what it misses is counted and reported by Stats.
func TestSlowLossyNeverBlocks(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		publish int
	}{
		{"size 1", 1, 10000},
		{"size 0 means 1", 0, 50},
		{"size 64", 64, 100000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bus.New(nil)
			slow := b.Subscribe("slow", tt.size, nil)
			defer slow.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for n := range tt.publish {
					b.Publish(tick{N: n})
				}
			}()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("Publish blocked on a subscriber that does not read")
			}
			size := max(tt.size, 1)
			published, subs := b.Stats()
			want := []bus.SubStats{{Name: "slow", Delivered: uint64(size), Dropped: uint64(tt.publish - size), Queued: size}}
			if published != uint64(tt.publish) {
				t.Errorf("published = %d, want %d", published, tt.publish)
			}
			if d := cmp.Diff(want, subs); d != "" {
				t.Errorf("Stats (-want +got):\n%s", d)
			}
			// What it kept are the first events, in order.
			got := collect(t, slow, size)
			for i, env := range got {
				if env.Seq != uint64(i+1) {
					t.Errorf("kept event %d has seq %d", i, env.Seq)
				}
			}
		})
	}
}

// TestReliableBurst: 100k events published as fast as possible while the
// reliable reader is slower; nothing is lost, order holds, and the queue
// depth is visible.
func TestReliableBurst(t *testing.T) {
	const n = 100000
	b := bus.New(nil)
	rel := b.SubscribeReliable("store", nil)
	defer rel.Close()
	slow := b.Subscribe("console", 8, nil)
	defer slow.Close()

	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := range n / 4 {
				b.Publish(tick{From: p, N: i})
			}
		})
	}
	wg.Wait() // every event is published before the reader starts
	_, subs := b.Stats()
	var st bus.SubStats
	for _, s := range subs {
		if s.Name == "store" {
			st = s
		}
	}
	if !st.Reliable || st.HighWater < n-1 || st.Dropped != 0 {
		t.Errorf("store stats after burst = %+v, want reliable, high water >= %d, no drops", st, n-1)
	}
	got := collect(t, rel, n)
	for i, env := range got {
		if env.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, env.Seq)
		}
	}
	_, subs = b.Stats()
	for _, s := range subs {
		switch s.Name {
		case "store":
			if s.Delivered != n || s.Dropped != 0 || s.Queued != 0 {
				t.Errorf("store stats = %+v, want %d delivered, none dropped or queued", s, n)
			}
		case "console":
			if s.Dropped != n-8 {
				t.Errorf("console dropped %d, want %d", s.Dropped, n-8)
			}
		}
	}
}

func TestFilter(t *testing.T) {
	b := bus.New(nil)
	onlyOther := func(ev bus.Event) bool { _, ok := ev.(other); return ok }
	lossy := b.Subscribe("lossy", 16, onlyOther)
	defer lossy.Close()
	rel := b.SubscribeReliable("rel", onlyOther)
	defer rel.Close()
	for i := range 6 {
		if i%2 == 0 {
			b.Publish(tick{N: i})
		} else {
			b.Publish(other{N: i})
		}
	}
	for _, s := range []*bus.Sub{lossy, rel} {
		got := collect(t, s, 3)
		if d := cmp.Diff([]uint64{2, 4, 6}, seqs(got)); d != "" {
			t.Errorf("%s seqs (-want +got):\n%s", s.Name(), d)
		}
	}
}

// TestDrain covers the shutdown path of the store: whatever was published
// and not yet read comes back from Drain, including the event the pump had
// already taken off the queue, and nothing comes twice.
func TestDrain(t *testing.T) {
	tests := []struct {
		name      string
		publish   int
		readFirst int
	}{
		{"nothing read", 10, 0},
		{"some read", 10, 3},
		{"all read", 10, 10},
		{"empty", 0, 0},
		{"large", 5000, 1234},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bus.New(nil)
			s := b.SubscribeReliable("store", nil)
			for i := range tt.publish {
				b.Publish(tick{N: i})
			}
			read := collect(t, s, tt.readFirst)
			rest := s.Drain()
			all := append(read, rest...)
			if len(all) != tt.publish {
				t.Fatalf("read %d + drained %d = %d, want %d", len(read), len(rest), len(all), tt.publish)
			}
			for i, env := range all {
				if env.Seq != uint64(i+1) {
					t.Fatalf("event %d has seq %d", i, env.Seq)
				}
			}
			// After Drain: C is closed, nothing more arrives, and a second
			// Drain or a Close is harmless.
			if _, ok := <-s.C(); ok {
				t.Error("C still open after Drain")
			}
			b.Publish(tick{N: -1})
			if again := s.Drain(); again != nil {
				t.Errorf("second Drain = %d events, want none", len(again))
			}
			s.Close()
			if _, subs := b.Stats(); len(subs) != 0 {
				t.Errorf("subscriptions after Drain: %+v", subs)
			}
		})
	}
}

func TestDrainLossy(t *testing.T) {
	b := bus.New(nil)
	s := b.Subscribe("console", 4, nil)
	for i := range 3 {
		b.Publish(tick{N: i})
	}
	if d := cmp.Diff([]uint64{1, 2, 3}, seqs(s.Drain())); d != "" {
		t.Errorf("Drain (-want +got):\n%s", d)
	}
	if _, ok := <-s.C(); ok {
		t.Error("C still open after Drain")
	}
}

func TestCloseDiscards(t *testing.T) {
	for _, reliable := range []bool{false, true} {
		t.Run(fmt.Sprint("reliable=", reliable), func(t *testing.T) {
			b := bus.New(nil)
			var s *bus.Sub
			if reliable {
				s = b.SubscribeReliable("s", nil)
			} else {
				s = b.Subscribe("s", 4, nil)
			}
			b.Publish(tick{})
			s.Close()
			s.Close()
			b.Publish(tick{}) // must not panic on a closed channel
			if s.Drain() != nil {
				t.Error("Drain after Close returned events")
			}
			// C ends: a lossy one may still hold what was buffered.
			for range s.C() {
			}
		})
	}
}

// TestNoLeak runs subscriptions and On inside a synctest bubble: the bubble
// fails the test if any goroutine is left blocked when it ends.
func TestNoLeak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := bus.New(nil)
		r1 := b.SubscribeReliable("closed", nil)
		r2 := b.SubscribeReliable("drained", nil)
		r3 := b.SubscribeReliable("idle", nil)
		l := b.Subscribe("lossy", 2, nil)
		ctx, cancel := context.WithCancel(t.Context())
		var got []int
		done := make(chan struct{})
		go func() {
			defer close(done)
			bus.On(ctx, b, "on", 8, func(o other) { got = append(got, o.N) })
		}()
		synctest.Wait() // On has subscribed
		for i := range 5 {
			b.Publish(tick{N: i})
			b.Publish(other{N: i})
		}
		synctest.Wait()
		r1.Close()
		r2.Drain()
		r3.Close()
		l.Close()
		cancel()
		<-done
		if d := cmp.Diff([]int{0, 1, 2, 3, 4}, got); d != "" {
			t.Errorf("On got (-want +got):\n%s", d)
		}
		if _, subs := b.Stats(); len(subs) != 0 {
			t.Errorf("subscriptions left: %+v", subs)
		}
	})
}

func TestTime(t *testing.T) {
	at := time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)
	b := bus.New(func() time.Time { return at })
	s := b.Subscribe("s", 1, nil)
	defer s.Close()
	b.Publish(other{})
	if env := <-s.C(); !env.Time.Equal(at) || env.Seq != 1 {
		t.Errorf("envelope = %+v, want time %v seq 1", env, at)
	}
}

func BenchmarkPublish(b *testing.B) {
	bs := bus.New(nil)
	l := bs.Subscribe("lossy", 1024, nil)
	defer l.Close()
	r := bs.SubscribeReliable("reliable", nil)
	defer r.Close()
	go func() {
		for range r.C() {
		}
	}()
	for i := 0; b.Loop(); i++ {
		bs.Publish(tick{N: i})
	}
}

// TestOnReliableSeesEveryEvent: a burst far larger than any lossy buffer
// reaches an OnReliable handler whole and in order.
func TestOnReliableSeesEveryEvent(t *testing.T) {
	b := bus.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan int, 10000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bus.OnReliable(ctx, b, "test", func(e bus.Notice) { got <- len(e.Text) })
	}()
	for { // wait for the subscription
		if _, subs := b.Stats(); len(subs) == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	const n = 5000
	for i := 1; i <= n; i++ {
		b.Publish(bus.Notice{Text: strings.Repeat("x", i%100)})
	}
	for i := 1; i <= n; i++ {
		if l := <-got; l != i%100 {
			t.Fatalf("event %d: got length %d, want %d", i, l, i%100)
		}
	}
	cancel()
	<-done
}
