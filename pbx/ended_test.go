package pbx

import (
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestByeRetransmittedAfterEnd: the caller's BYE is retransmitted after
// the box answered it and ended the call (the 200 was late or lost). The
// retransmission gets the same 200 again from the transaction (RFC 3261
// §17.2.2), not a 481 from the entry, which once overtook a late 200 and
// failed calls that had ended well; a new BYE in the ended dialog gets 481.
func TestByeRetransmittedAfterEnd(t *testing.T) {
	rc := newRawCall(t)
	bye := rc.fromCaller(sip.BYE, 3)
	rc.cli.send(bye, "")
	rc.isp.answer(rc.isp.nextRequest(t, sip.BYE), 200, rc.ispTag, "")
	if r := rc.cli.final(5 * time.Second); r == nil || r.StatusCode != 200 {
		t.Fatalf("BYE: %v", r)
	}
	rc.expect(t, "", 0)
	rc.cli.send(bye, "") // the same request: same branch, same CSeq
	if r := rc.cli.final(5 * time.Second); r == nil || r.StatusCode != 200 || r.CSeq().SeqNo != 3 {
		t.Fatalf("retransmitted BYE after the end: %v, want its 200 again", r)
	}
	rc.cli.send(rc.fromCaller(sip.BYE, 4), "")
	if r := rc.cli.final(5 * time.Second); r == nil || r.StatusCode != 481 {
		t.Fatalf("new BYE in the ended dialog: %v, want 481", r)
	}
}

// TestEndedDialogs: an ended dialog is known for Timer J, then forgotten;
// the table forgets the oldest first when full, and reuses its queue.
func TestEndedDialogs(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	key := func(i int) dialogKey { return dialogKey{fmt.Sprintf("call-%d", i), "tag"} }
	tests := []struct {
		name  string
		adds  int           // dialogs ended, one per microsecond from t0
		at    time.Duration // when asked, after t0
		known []int         // asked for: known
		gone  []int         // asked for: not known
	}{
		{"just ended", 1, time.Second, []int{0}, nil},
		{"within Timer J", 3, endedFor() - time.Second, []int{0, 1, 2}, nil},
		{"after Timer J", 3, endedFor() + 10*time.Millisecond, nil, []int{0, 1, 2}},
		{"the first gone, the last still there", 3, endedFor() + time.Microsecond, []int{2}, []int{0}},
		{"full: the oldest go first", maxEnded + 5, 2 * time.Second, []int{5, maxEnded + 4}, []int{0, 4}},
		{"never ended", 2, time.Second, []int{0, 1}, []int{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := endedDialogs{until: map[dialogKey]time.Time{}}
			for i := range tt.adds {
				e.add(key(i), t0.Add(time.Duration(i)*time.Microsecond))
			}
			now := t0.Add(tt.at)
			for _, i := range tt.known {
				if !e.has(key(i), now) {
					t.Errorf("dialog %d not known at %v", i, tt.at)
				}
			}
			for _, i := range tt.gone {
				if e.has(key(i), now) {
					t.Errorf("dialog %d still known at %v", i, tt.at)
				}
			}
			if len(e.until) > maxEnded || len(e.queue)-e.head != len(e.until) {
				t.Errorf("table %d entries, queue %d from %d", len(e.until), len(e.queue), e.head)
			}
		})
	}
	// everything expires on the next add after Timer J
	e := endedDialogs{until: map[dialogKey]time.Time{}}
	for i := range 100 {
		e.add(key(i), t0)
	}
	e.add(key(100), t0.Add(endedFor()))
	if len(e.until) != 1 || len(e.queue)-e.head != 1 {
		t.Errorf("after Timer J: %d entries, queue %d from %d; want 1", len(e.until), len(e.queue), e.head)
	}
}
