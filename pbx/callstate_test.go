package pbx

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

// A call's life as a table: each step drives the call through the same
// functions the SIP handlers use, and the events published and the
// per-peer call counts after it are checked.
func TestCallTransitions(t *testing.T) {
	type step struct {
		do     string // what happens (see the switch below)
		peer   string // the callee leg it concerns
		ok     bool   // whether the state change is taken
		events string // kinds published, space separated
		state  callState
		counts map[string]int // peer -> calls after the step (others 0)
	}
	const a, b = ispLine, "modem2"
	caller := clientLine
	n := func(kv ...any) map[string]int {
		m := map[string]int{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(int)
		}
		return m
	}
	tests := []struct {
		name  string
		steps []step
		ended string // the CallEnded's "status code by", "" if none
	}{
		{"answered after ringing, caller hangs up", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "ringing", peer: a, ok: true, events: "call.ringing", state: stateRinging, counts: n(caller, 1, a, 1)},
			{do: "ringing", peer: a, ok: true, state: stateRinging, counts: n(caller, 1, a, 1)}, // a 183 after the 180
			{do: "answer", peer: a, ok: true, events: "call.answered", state: stateUp, counts: n(caller, 1, a, 1)},
			{do: "bye-caller", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "ANSWER 200 caller"},
		{"answered without ringing, callee hangs up", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "answer", peer: a, ok: true, events: "call.answered", state: stateUp, counts: n(caller, 1, a, 1)},
			{do: "bye-callee", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "ANSWER 200 callee"},
		{"callee busy", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "lose", peer: a, ok: true, state: stateRouting, counts: n(caller, 1)},
			{do: "fail-busy", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "BUSY 486 box"},
		{"forked: the first to answer wins, the other is released", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "fork", peer: b, ok: true, state: stateRouting, counts: n(caller, 1, a, 1, b, 1)},
			{do: "ringing", peer: a, ok: true, events: "call.ringing", state: stateRinging, counts: n(caller, 1, a, 1, b, 1)},
			{do: "ringing", peer: b, ok: true, state: stateRinging, counts: n(caller, 1, a, 1, b, 1)},
			{do: "answer", peer: b, ok: true, events: "call.answered", state: stateUp, counts: n(caller, 1, b, 1)},
			{do: "bye-callee", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "ANSWER 200 callee"},
		{"hunt: the first member is busy, the second answers", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "lose", peer: a, ok: true, state: stateRouting, counts: n(caller, 1)},
			{do: "fork", peer: b, ok: true, state: stateRouting, counts: n(caller, 1, b, 1)},
			{do: "ringing", peer: b, ok: true, events: "call.ringing", state: stateRinging, counts: n(caller, 1, b, 1)},
			{do: "answer", peer: b, ok: true, events: "call.answered", state: stateUp, counts: n(caller, 1, b, 1)},
			{do: "shutdown", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "ANSWER 200 box"},
		{"CANCEL while ringing", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "ringing", peer: a, ok: true, events: "call.ringing", state: stateRinging, counts: n(caller, 1, a, 1)},
			{do: "cancel", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "CANCEL 487 caller"},
		{"CANCEL crossing the callee's 200", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "ringing", peer: a, ok: true, events: "call.ringing", state: stateRinging, counts: n(caller, 1, a, 1)},
			{do: "answer-cancelled", peer: a, ok: true, events: "call.ended", state: stateEnded, counts: n()},
			{do: "up", ok: false, state: stateEnded, counts: n()},
		}, "CANCEL 487 box"},
		{"CANCEL after 200 changes nothing", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "answer", peer: a, ok: true, events: "call.answered", state: stateUp, counts: n(caller, 1, a, 1)},
			// the INVITE server transaction is Accepted: sipgo does not
			// call OnCancel, so the call sees nothing (RFC 6026 §7.1)
			{do: "ringing", peer: a, ok: false, state: stateUp, counts: n(caller, 1, a, 1)},
			{do: "bye-caller", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "ANSWER 200 caller"},
		{"re-INVITE, then glare", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "answer", peer: a, ok: true, events: "call.answered", state: stateUp, counts: n(caller, 1, a, 1)},
			{do: "reinvite", ok: true, state: stateReinvite, counts: n(caller, 1, a, 1)},
			{do: "reinvite", ok: false, state: stateReinvite, counts: n(caller, 1, a, 1)}, // 491
			{do: "up", ok: true, state: stateUp, counts: n(caller, 1, a, 1)},
			{do: "reinvite", ok: true, state: stateReinvite, counts: n(caller, 1, a, 1)}, // the retry after 491
			{do: "up", ok: true, state: stateUp, counts: n(caller, 1, a, 1)},
			{do: "bye-callee", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "ANSWER 200 callee"},
		{"BYE during a re-INVITE", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "answer", peer: a, ok: true, events: "call.answered", state: stateUp, counts: n(caller, 1, a, 1)},
			{do: "reinvite", ok: true, state: stateReinvite, counts: n(caller, 1, a, 1)},
			{do: "bye-caller", ok: true, events: "call.ended", state: stateEnded, counts: n()},
			{do: "up", ok: false, state: stateEnded, counts: n()}, // the re-INVITE's late answer
		}, "ANSWER 200 caller"},
		{"re-INVITE before the answer", []step{
			{do: "reinvite", ok: false, state: stateRouting, counts: n(caller, 1)},
			{do: "fail-congestion", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "CONGESTION 503 box"},
		{"ended is final", []step{
			{do: "fork", peer: a, ok: true, state: stateRouting, counts: n(caller, 1, a, 1)},
			{do: "cancel", ok: true, events: "call.ended", state: stateEnded, counts: n()},
			{do: "ringing", peer: a, ok: false, state: stateEnded, counts: n()},
			{do: "answer", peer: a, ok: false, state: stateEnded, counts: n()},
			{do: "reinvite", ok: false, state: stateEnded, counts: n()},
			{do: "bye-callee", ok: false, state: stateEnded, counts: n()},
			{do: "shutdown", ok: false, state: stateEnded, counts: n()},
		}, "CANCEL 487 caller"},
		{"box stops while routing", []step{
			{do: "shutdown", ok: true, events: "call.ended", state: stateEnded, counts: n()},
		}, "CANCEL 503 box"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(twoModems(""), Options{Bus: bus.New(nil)})
			if err != nil {
				t.Fatal(err)
			}
			sub := s.bus.Subscribe("test", 64, nil)
			c := newTestCall(t, s, caller)
			forks := map[string]*leg{}
			var ended []bus.CallEnded
			for i, st := range tt.steps {
				var ok bool
				switch st.do {
				case "fork": // an INVITE went to a callee
					l := &leg{side: sideCallee, peer: st.peer, callID: "b-" + st.peer, localTag: "t-" + st.peer}
					forks[st.peer] = l
					s.mu.Lock()
					c.holdLocked(s.peers[st.peer], l)
					s.mu.Unlock()
					ok = true
				case "ringing":
					ok = c.changeState(stateRinging, transition{callee: st.peer})
				case "lose": // the fork failed or was cancelled
					c.release(forks[st.peer])
					ok = true
				case "answer", "answer-cancelled": // as answered() does
					for p, l := range forks {
						if p != st.peer {
							c.release(l)
						}
					}
					c.mu.Lock()
					if c.state != stateEnded {
						c.legs[sideCallee], c.callee = forks[st.peer], st.peer
					}
					c.mu.Unlock()
					if st.do == "answer-cancelled" {
						c.cancel(nil)
						ok = c.state != stateEnded
						c.hangup(sideCaller, "CANCEL", 487, "box")
					} else {
						ok = c.changeState(stateUp, transition{})
					}
				case "up":
					ok = c.changeState(stateUp, transition{})
				case "reinvite":
					ok = c.changeState(stateReinvite, transition{})
				case "bye-caller", "bye-callee":
					by, from := "caller", sideCaller
					if st.do == "bye-callee" {
						by, from = "callee", sideCallee
					}
					ok = c.state != stateEnded
					c.hangup(from, "ANSWER", 200, by)
				case "cancel":
					ok = c.changeState(stateEnded, transition{status: "CANCEL", code: 487, by: "caller"})
				case "fail-busy":
					ok = c.changeState(stateEnded, transition{status: "BUSY", code: 486, by: "box"})
				case "fail-congestion":
					ok = c.changeState(stateEnded, transition{status: "CONGESTION", code: 503, by: "box"})
				case "shutdown":
					ok = c.state != stateEnded
					s.shutdownCalls()
					if c.state != stateEnded && errors.Is(context.Cause(c.ctx), errBoxStopping) {
						c.end("CANCEL", 503, "box") // what abandoned() does after the 503
					}
				default:
					t.Fatalf("unknown step %q", st.do)
				}
				var kinds []string
				for more := true; more; {
					select {
					case env := <-sub.C():
						kinds = append(kinds, env.Event.Kind())
						if e, isEnd := env.Event.(bus.CallEnded); isEnd {
							ended = append(ended, e)
						}
					default:
						more = false
					}
				}
				where := fmt.Sprintf("step %d (%s %s)", i, st.do, st.peer)
				if ok != st.ok {
					t.Errorf("%s: taken = %v, want %v", where, ok, st.ok)
				}
				if got := strings.Join(kinds, " "); got != st.events {
					t.Errorf("%s: events %q, want %q", where, got, st.events)
				}
				if c.state != st.state {
					t.Errorf("%s: state %s, want %s", where, c.state, st.state)
				}
				if got := peerCounts(s); !reflect.DeepEqual(got, st.counts) {
					t.Errorf("%s: per-peer calls %v, want %v", where, got, st.counts)
				}
			}
			got := ""
			if len(ended) > 1 {
				t.Errorf("CallEnded published %d times", len(ended))
			}
			if len(ended) > 0 {
				got = fmt.Sprintf("%s %d %s", ended[0].Status, ended[0].SIPCode, ended[0].HangupBy)
			}
			if got != tt.ended {
				t.Errorf("CallEnded %q, want %q", got, tt.ended)
			}
			s.mu.Lock()
			left := len(s.calls) + len(s.dialogs)
			s.mu.Unlock()
			if left != 0 {
				t.Errorf("%d calls/dialogs left in the tables", left)
			}
		})
	}
}

// newTestCall is a call as newCall leaves it, without a network: the
// legs have no remote tag, so hangup sends no BYE.
func newTestCall(t *testing.T, s *Server, from string) *call {
	t.Helper()
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "123", Host: "127.0.0.1"})
	cid := sip.CallIDHeader("a@test")
	req.AppendHeader(&cid)
	s.runCtx = context.Background()
	ctx, cancel := context.WithCancelCause(s.runCtx)
	t.Cleanup(func() { cancel(nil) })
	c := &call{s: s, id: "00000001", from: from, exten: "123", context: "default", start: s.now(),
		ctx: ctx, cancel: cancel, inviteReq: req, state: stateRouting, media: "direct"}
	a := &leg{side: sideCaller, peer: from, callID: "a@test", localTag: "a"}
	c.legs[sideCaller] = a
	s.mu.Lock()
	c.holdLocked(s.peers[from], a)
	s.calls[c.id] = c
	s.dialogs[dialogKey{a.callID, a.localTag}] = &dialogRef{c, sideCaller}
	s.mu.Unlock()
	return c
}

func peerCounts(s *Server) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for name, p := range s.peers {
		if p.calls != 0 {
			m[name] = p.calls
		}
	}
	return m
}
