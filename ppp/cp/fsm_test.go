package cp

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testHandler accepts any option list except type 99, which it Naks once
// with a fixed value and then accepts.
type testHandler struct {
	up, down, started, finished int
	req                         Options
	echoes                      int
}

func (h *testHandler) Request() Options { return h.req }
func (h *testHandler) CheckRequest(opts Options, rejectOnly bool) (Code, Options) {
	for _, o := range opts {
		if o.Type == 99 && !bytes.Equal(o.Data, []byte{1}) {
			if rejectOnly {
				return ConfRej, Options{o}
			}
			return ConfNak, Options{{Type: 99, Data: []byte{1}}}
		}
	}
	return ConfAck, opts
}
func (h *testHandler) Ack(Options) bool { return true }
func (h *testHandler) Nak(opts Options) bool {
	for i, o := range h.req {
		for _, n := range opts {
			if n.Type == o.Type {
				h.req[i] = n
			}
		}
	}
	return true
}
func (h *testHandler) Reject(opts Options) bool {
	var keep Options
	for _, o := range h.req {
		drop := false
		for _, r := range opts {
			drop = drop || r.Type == o.Type
		}
		if !drop {
			keep = append(keep, o)
		}
	}
	h.req = keep
	return true
}
func (h *testHandler) Extended(p Packet) (Event, bool) {
	if p.Code == EchoReq {
		return RXR, true
	}
	return 0, false
}
func (h *testHandler) EchoReply(Packet) { h.echoes++ }
func (h *testHandler) Up()              { h.up++ }
func (h *testHandler) Down()            { h.down++ }
func (h *testHandler) Started()         { h.started++ }
func (h *testHandler) Finished()        { h.finished++ }

type fakeTimer struct{ running bool }

func (t *fakeTimer) Start(time.Duration) { t.running = true }
func (t *fakeTimer) Stop()               { t.running = false }

type end struct {
	f     *FSM
	h     *testHandler
	t     *fakeTimer
	queue []Packet // packets sent by this end, not yet delivered
}

func newEnd(name string, req Options) *end {
	e := &end{h: &testHandler{req: req}, t: &fakeTimer{}}
	e.f = New(name, e.h, func(p Packet) {
		p.Data = bytes.Clone(p.Data)
		e.queue = append(e.queue, p)
	}, e.t, DefaultParams(), nil)
	return e
}

// pump delivers queued packets both ways until both queues are empty.
func pump(a, b *end) {
	for len(a.queue)+len(b.queue) > 0 {
		qa, qb := a.queue, b.queue
		a.queue, b.queue = nil, nil
		for _, p := range qa {
			b.f.Input(p)
		}
		for _, p := range qb {
			a.f.Input(p)
		}
	}
}

func TestNegotiateOpenClose(t *testing.T) {
	a := newEnd("A", Options{{Type: 99, Data: []byte{7}}, {Type: 5, Data: []byte{1, 2, 3, 4}}})
	b := newEnd("B", Options{{Type: 3, Data: []byte{0}}})
	for _, e := range []*end{a, b} {
		e.f.Open()
		e.f.Up()
	}
	pump(a, b)
	if a.f.State() != Opened || b.f.State() != Opened {
		t.Fatalf("states %s %s, want Opened", a.f.State(), b.f.State())
	}
	if diff := cmp.Diff(Options{{Type: 99, Data: []byte{1}}, {Type: 5, Data: []byte{1, 2, 3, 4}}}, a.h.req); diff != "" {
		t.Errorf("A's request after Nak (-want +got):\n%s", diff)
	}
	if a.h.up != 1 || b.h.up != 1 || a.t.running || b.t.running {
		t.Errorf("up %d %d, timers %v %v", a.h.up, b.h.up, a.t.running, b.t.running)
	}
	b.f.Input(Packet{Code: EchoReq, ID: 9, Data: []byte{0, 0, 0, 0}})
	b.f.Input(Packet{Code: 77, ID: 1})
	if b.h.echoes != 1 || len(b.queue) != 1 || b.queue[0].Code != CodeRej {
		t.Fatalf("echo %d, queue %v", b.h.echoes, b.queue)
	}
	b.queue = nil
	a.f.Close("bye")
	pump(a, b)
	if a.f.State() != Closed || b.f.State() != Stopping {
		t.Fatalf("after close: %s %s", a.f.State(), b.f.State())
	}
	// B waits one restart period in Stopping (zrc), then finishes.
	b.f.Timeout()
	if b.f.State() != Stopped || b.h.finished != 1 || a.h.finished != 1 {
		t.Fatalf("after timeout: %s finished %d %d", b.f.State(), a.h.finished, b.h.finished)
	}
}

func TestCountersExpire(t *testing.T) {
	a := newEnd("A", nil)
	a.f.Open()
	a.f.Up()
	for range 20 {
		a.f.Timeout()
	}
	n := 0
	for _, p := range a.queue {
		if p.Code == ConfReq {
			n++
		}
	}
	if n != 10 || a.f.State() != Stopped || a.h.finished != 1 {
		t.Fatalf("sent %d Configure-Requests, state %s, finished %d; want 10, Stopped, 1", n, a.f.State(), a.h.finished)
	}
	// Terminate: Max-Terminate 2 requests then Closed.
	b := newEnd("B", nil)
	b.f.Open()
	b.f.Up()
	b.queue = nil
	b.f.Close("x")
	for range 5 {
		b.f.Timeout()
	}
	n = 0
	for _, p := range b.queue {
		if p.Code == TermReq {
			n++
		}
	}
	if n != 2 || b.f.State() != Closed {
		t.Fatalf("sent %d Terminate-Requests, state %s; want 2, Closed", n, b.f.State())
	}
}

func TestMaxFailureTurnsNakIntoReject(t *testing.T) {
	b := newEnd("B", nil)
	b.f.Open()
	b.f.Up()
	for i := range 7 {
		b.queue = nil
		b.f.Input(Packet{Code: ConfReq, ID: uint8(i), Data: []byte{99, 3, 5}})
		want := ConfNak
		if i >= 5 {
			want = ConfRej
		}
		if len(b.queue) != 1 || b.queue[0].Code != want {
			t.Fatalf("request %d: answers %v, want %s", i, b.queue, want)
		}
	}
}

func FuzzOptions(f *testing.F) {
	f.Add([]byte{1, 4, 5, 220, 2, 6, 0, 0, 0, 0, 7, 2, 8, 2})
	f.Add([]byte{3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		opts, err := ParseOptions(b)
		if err != nil {
			return
		}
		out, err := opts.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip: % x -> % x", b, out)
		}
		var p Packet
		pk := append([]byte{1, 2, 0, byte(4 + len(b))}, b...)
		if len(b) < 252 && p.Unmarshal(pk) == nil {
			again, _ := p.Marshal()
			if !bytes.Equal(again, pk) {
				t.Fatalf("packet round trip: % x -> % x", pk, again)
			}
		}
	})
}

// FuzzFSM feeds random packets, timeouts and administrative events to an
// automaton; it must never panic, leave the ten states, or run a timer in a
// state that has none.
func FuzzFSM(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 1, 4, 0, 0, 3, 2, 1, 4, 0})
	f.Add([]byte{2, 1, 5, 3, 0, 4, 0, 9, 7, 8, 1, 3})
	f.Fuzz(func(t *testing.T, script []byte) {
		e := newEnd("F", Options{{Type: 1, Data: []byte{5, 220}}})
		for len(script) > 0 {
			op := script[0]
			script = script[1:]
			switch op % 8 {
			case 0:
				e.f.Up()
			case 1:
				e.f.Open()
			case 2:
				e.f.Timeout()
			case 3:
				e.f.Close("fuzz")
			case 4:
				e.f.Down()
			default:
				if len(script) < 3 {
					return
				}
				n := int(script[2]) % 8
				if n > len(script)-3 {
					n = len(script) - 3
				}
				p := Packet{Code: Code(script[0] % 16), ID: script[1], Data: script[3 : 3+n]}
				if p.Code >= ConfAck && p.Code <= ConfRej && script[1]%2 == 0 {
					p.ID = e.f.reqID
				}
				script = script[3+n:]
				e.f.Input(p)
			}
			if e.f.State() >= numStates {
				t.Fatalf("state %d", e.f.State())
			}
			switch e.f.State() {
			case Initial, Starting, Closed, Stopped, Opened:
				if e.t.running {
					t.Fatalf("timer running in %s", e.f.State())
				}
			default: // the other states may run the timer
			}
		}
	})
}

// TestNakForeverGivesUp: RFC 1661 §4.6 against peers that never converge.
// A peer whose requests we must Nak gets Max-Failure Naks, then Rejects,
// then the negotiation ends (This-Layer-Finished, Stopped); a peer that
// Naks our request forever is given up on after Max-Configure answers, where
// the restart counter, re-armed by every Nak, would never run out.
func TestNakForeverGivesUp(t *testing.T) {
	t.Run("peer requests", func(t *testing.T) {
		b := newEnd("B", nil)
		b.f.Open()
		b.f.Up()
		p := DefaultParams()
		for i := range 2*p.MaxFailure + 1 {
			b.queue = nil
			b.f.Input(Packet{Code: ConfReq, ID: uint8(i), Data: []byte{99, 3, 5}})
			if i == 2*p.MaxFailure {
				if len(b.queue) != 0 || b.f.State() != Stopped || b.h.finished != 1 {
					t.Fatalf("request %d: sent %v, state %v, finished %d; want nothing, Stopped, 1", i, b.queue, b.f.State(), b.h.finished)
				}
				return
			}
			want := ConfNak
			if i >= p.MaxFailure {
				want = ConfRej
			}
			if len(b.queue) != 1 || b.queue[0].Code != want {
				t.Fatalf("request %d: answers %v, want %s", i, b.queue, want)
			}
		}
	})
	t.Run("peer naks", func(t *testing.T) {
		a := newEnd("A", Options{{Type: 1, Data: []byte{5, 220}}})
		a.f.Open()
		a.f.Up()
		p := DefaultParams()
		for i := 0; i <= p.MaxConfigure+1; i++ {
			if len(a.queue) == 0 {
				break
			}
			req := a.queue[len(a.queue)-1]
			a.queue = nil
			if req.Code != ConfReq {
				t.Fatalf("answer %d: sent %v", i, req)
			}
			a.f.Input(Packet{Code: ConfNak, ID: req.ID, Data: []byte{1, 4, 5, byte(i)}})
		}
		if a.f.State() != Stopped || a.h.finished != 1 {
			t.Fatalf("after %d Naks: state %v, finished %d; want Stopped, 1", p.MaxConfigure+1, a.f.State(), a.h.finished)
		}
	})
}
