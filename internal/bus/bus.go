// Package bus is the typed, in-process publish/subscribe of isp-box events.
//
// Every part of the box (pbx, modem, ppp, netstack) publishes what happens to it
// as an Event; the console, the store and the other parts subscribe.
//
// # Ordering
//
// Publish stamps each event with a sequence number under one lock, so there is
// one total order of events. Every subscriber receives the events it accepts in
// that order. Events published from different goroutines are ordered by when
// Publish was called.
//
// # Back-pressure
//
// Publish never blocks and never waits for a subscriber. There are two kinds of
// subscription, chosen by the subscriber:
//
//   - Lossy (Subscribe): a bounded channel. When it is full the event is dropped
//     for that subscriber and counted in its Dropped counter, which the console
//     shows. A slow lossy subscriber is a bug in the subscriber, never a stall of
//     the box. The console's live stream uses this.
//   - Reliable (SubscribeReliable): an unbounded queue drained by the
//     subscription's own goroutine into its channel. Nothing is ever dropped;
//     a slow subscriber costs memory, not latency. The store uses this so that
//     no call or session record is lost. Depth and high-water mark are visible.
//     At shutdown its reader calls Drain instead of Close: Drain unsubscribes
//     and returns, in order, every event not yet received from C, so the
//     last records are committed, none twice.
//
// Handlers should do fast state updates only; anything slow belongs in the
// subscriber's own goroutine.
package bus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Event is anything published on the bus. Concrete event types live in
// events.go so that packages that must not import each other can share them.
type Event interface {
	// Kind is a short stable name, e.g. "call.started".
	Kind() string
}

// Envelope is an event as delivered: with its sequence number and time.
type Envelope struct {
	Seq   uint64
	Time  time.Time
	Event Event
}

// Bus is safe for concurrent use. The zero value is not usable; call New.
type Bus struct {
	now func() time.Time

	mu   sync.Mutex // guards seq and subs; held during fan-out to keep the total order
	seq  uint64
	subs map[*Sub]struct{}

	published atomic.Uint64
	lost      atomic.Uint64 // dropped by every lossy subscription, closed ones too
}

// New returns an empty bus. now may be nil (time.Now).
func New(now func() time.Time) *Bus {
	if now == nil {
		now = time.Now
	}
	return &Bus{now: now, subs: make(map[*Sub]struct{})}
}

// Publish delivers ev to every subscriber that accepts it. It never blocks.
func (b *Bus) Publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	env := Envelope{Seq: b.seq, Time: b.now(), Event: ev}
	b.published.Add(1)
	for s := range b.subs {
		if s.filter != nil && !s.filter(ev) {
			continue
		}
		s.deliver(env)
	}
}

// Sub is one subscription. Read from C until it is closed.
type Sub struct {
	name     string
	filter   func(Event) bool
	reliable bool
	bus      *Bus

	c chan Envelope

	// reliable only
	qmu     sync.Mutex
	queue   []Envelope
	wake    chan struct{}
	done    chan struct{} // closed to stop the pump
	stopped chan struct{} // closed when the pump has exited
	closed  bool
	highH2O int

	dropped   atomic.Uint64
	delivered atomic.Uint64
}

// Subscribe returns a lossy subscription with a channel of size size (at
// least 1). filter may be nil to accept every event.
func (b *Bus) Subscribe(name string, size int, filter func(Event) bool) *Sub {
	if size < 1 {
		size = 1
	}
	s := &Sub{name: name, filter: filter, bus: b, c: make(chan Envelope, size)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// SubscribeReliable returns a subscription that never drops: events queue
// without bound until the subscriber reads them.
func (b *Bus) SubscribeReliable(name string, filter func(Event) bool) *Sub {
	s := &Sub{name: name, filter: filter, bus: b, reliable: true,
		c: make(chan Envelope), wake: make(chan struct{}, 1), done: make(chan struct{}),
		stopped: make(chan struct{})}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	go s.pump()
	return s
}

func (s *Sub) deliver(env Envelope) {
	if !s.reliable {
		select {
		case s.c <- env:
			s.delivered.Add(1)
		default:
			s.dropped.Add(1)
			s.bus.lost.Add(1)
		}
		return
	}
	s.qmu.Lock()
	if !s.closed {
		s.queue = append(s.queue, env)
		if len(s.queue) > s.highH2O {
			s.highH2O = len(s.queue)
		}
	}
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pump moves the reliable queue into the unbuffered channel. It exits when
// the subscription is closed or drained, after which C is closed. An event
// it has taken from the queue but not handed over goes back to the front of
// the queue, so that Drain returns it.
func (s *Sub) pump() {
	defer close(s.stopped)
	defer close(s.c)
	for {
		s.qmu.Lock()
		if len(s.queue) == 0 {
			s.qmu.Unlock()
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		env := s.queue[0]
		s.queue[0] = Envelope{}
		s.queue = s.queue[1:]
		s.qmu.Unlock()
		// Counted before the hand-over so that a reader who has received
		// the event never sees a Stats that has not counted it.
		s.delivered.Add(1)
		select {
		case s.c <- env:
		case <-s.done:
			s.delivered.Add(^uint64(0)) // not handed over after all
			s.qmu.Lock()
			s.queue = append([]Envelope{env}, s.queue...)
			s.qmu.Unlock()
			return
		}
	}
}

// C is the channel of delivered events. It is closed by Close.
func (s *Sub) C() <-chan Envelope { return s.c }

// Dropped is how many events this subscription has lost because its
// channel was full (always 0 for a reliable one).
func (s *Sub) Dropped() uint64 { return s.dropped.Load() }

// Name is the subscriber's name as given.
func (s *Sub) Name() string { return s.name }

// Close ends the subscription and closes C. Events still queued on a
// reliable subscription are discarded; call Drain instead to keep them.
// Close may be called more than once, and after Drain.
func (s *Sub) Close() {
	if !s.unsubscribe() {
		return
	}
	if s.reliable {
		s.stop()
		return
	}
	close(s.c)
}

// unsubscribe removes s from the bus; after it returns no Publish delivers
// to s any more. It reports whether s was still subscribed.
func (s *Sub) unsubscribe() bool {
	b := s.bus
	b.mu.Lock()
	_, ok := b.subs[s]
	delete(b.subs, s)
	b.mu.Unlock()
	return ok
}

// stop ends the pump of a reliable subscription and waits for it to exit.
func (s *Sub) stop() {
	s.qmu.Lock()
	s.closed = true
	s.qmu.Unlock()
	close(s.done)
	<-s.stopped
}

// Drain ends a reliable subscription like Close, but returns every event
// that was published to it and not yet received from C, in order, instead
// of discarding them: nothing is lost and nothing is returned twice. It is
// meant for the subscription's only reader, at shutdown, so that the store
// commits every record before the box exits. Drain on a lossy subscription
// returns the events still buffered in its channel. A second Drain, or
// Drain after Close, returns nil.
func (s *Sub) Drain() []Envelope {
	if !s.unsubscribe() {
		return nil
	}
	if !s.reliable {
		close(s.c)
		var q []Envelope
		for env := range s.c {
			q = append(q, env)
		}
		return q
	}
	s.stop()
	s.qmu.Lock()
	defer s.qmu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

// SubStats describes one subscription for the console.
type SubStats struct {
	Name      string `json:"name"`
	Reliable  bool   `json:"reliable"`
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
	Queued    int    `json:"queued"`
	HighWater int    `json:"high_water"`
}

// Lost is how many events lossy subscriptions have dropped since New,
// counting those already closed (a page or `isp-box console` that read
// too slowly and went away).
func (b *Bus) Lost() uint64 { return b.lost.Load() }

// Stats reports every live subscription and the number of events published.
func (b *Bus) Stats() (published uint64, subs []SubStats) {
	b.mu.Lock()
	list := make([]*Sub, 0, len(b.subs))
	for s := range b.subs {
		list = append(list, s)
	}
	b.mu.Unlock()
	for _, s := range list {
		st := SubStats{Name: s.name, Reliable: s.reliable, Delivered: s.delivered.Load(), Dropped: s.dropped.Load()}
		if s.reliable {
			s.qmu.Lock()
			st.Queued, st.HighWater = len(s.queue), s.highH2O
			s.qmu.Unlock()
		} else {
			st.Queued = len(s.c)
		}
		subs = append(subs, st)
	}
	return b.published.Load(), subs
}

// On runs fn for every event of type T until ctx is done, on a lossy
// subscription of the given size. It blocks; run it in the caller's own
// goroutine. fn must be fast.
func On[T Event](ctx context.Context, b *Bus, name string, size int, fn func(T)) {
	each(ctx, b.Subscribe(name, size, isA[T]), fn)
}

// OnReliable is On over a reliable subscription: fn sees every event of type
// T, in order, however far behind it falls. For state that must not be
// missed (a line going idle), where a lost event would leave a wrong state
// for good.
func OnReliable[T Event](ctx context.Context, b *Bus, name string, fn func(T)) {
	each(ctx, b.SubscribeReliable(name, isA[T]), fn)
}

// isA is the filter of a subscription to the events of type T.
func isA[T Event](ev Event) bool { _, ok := ev.(T); return ok }

// each runs fn for every event s delivers until ctx is done or s is
// closed, then closes s.
func each[T Event](ctx context.Context, s *Sub, fn func(T)) {
	defer s.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case env, ok := <-s.C():
			if !ok {
				return
			}
			fn(env.Event.(T))
		}
	}
}
