package cp

import (
	"os"
	"strings"
	"testing"
)

// TestTableGolden compares every cell of the table with the RFC's text in
// testdata/rfc1661-table.txt (both halves, 16 events × 10 states).
func TestTableGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/rfc1661-table.txt")
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]Event{}
	for e := range numEvents {
		events[e.String()] = e
	}
	seen := map[[2]int]bool{}
	firstCol := State(0)
	for _, line := range strings.Split(string(raw), "\n") {
		name, rest, ok := strings.Cut(line, "|")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if name == "Events" {
			// header "Initial Starting ..." tells which half follows
			if strings.Contains(rest, "Req-Sent") {
				firstCol = ReqSent
			} else {
				firstCol = Initial
			}
			continue
		}
		ev, ok := events[name]
		if !ok {
			continue
		}
		cells := strings.Fields(rest)
		for i, want := range cells {
			s := firstCol + State(i)
			got := Step(s, ev).String()
			if got != want {
				t.Errorf("%-4s in %-8s: table has %q, RFC says %q", ev, s, got, want)
			}
			seen[[2]int{int(ev), int(s)}] = true
		}
	}
	if len(seen) != int(numEvents)*int(numStates) {
		t.Fatalf("golden file covered %d cells, want %d", len(seen), int(numEvents)*int(numStates))
	}
}
