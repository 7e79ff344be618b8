package bus

import "testing"

// Lost counts what every lossy subscription dropped, and keeps counting
// it after the subscription is closed; reliable ones never add to it.
func TestLost(t *testing.T) {
	b := New(nil)
	slow := b.Subscribe("slow", 1, nil)
	rel := b.SubscribeReliable("reliable", nil)
	defer rel.Close()
	for range 3 {
		b.Publish(Notice{Text: "x"})
	}
	if got := b.Lost(); got != 2 {
		t.Errorf("lost %d, want 2 (a queue of one, three events)", got)
	}
	slow.Close()
	b.Publish(Notice{Text: "y"})
	if got, _ := b.Stats(); got != 4 || b.Lost() != 2 {
		t.Errorf("after the slow subscriber left: published %d, lost %d; want 4, 2", got, b.Lost())
	}
}
