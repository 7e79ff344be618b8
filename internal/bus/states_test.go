package bus_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/ppp"
)

func TestLineStatus(t *testing.T) {
	tests := []struct {
		s            bus.LineStatus
		busy, inCall bool
	}{
		{bus.LineOpening, true, false},
		{bus.LineResetting, true, false},
		{bus.LineInitialising, true, false},
		{bus.LineIdle, false, false},
		{bus.LineRinging, false, true},
		{bus.LineAnswering, true, true},
		{bus.LineConnected, true, true},
		{bus.LineHangingup, true, true},
		{bus.LineDown, true, false},
	}
	known := map[bus.LineStatus]bool{}
	for _, tt := range tests {
		known[tt.s] = true
		if got := tt.s.Busy(); got != tt.busy {
			t.Errorf("%s.Busy() = %v, want %v", tt.s, got, tt.busy)
		}
		if got := tt.s.InCall(); got != tt.inCall {
			t.Errorf("%s.InCall() = %v, want %v", tt.s, got, tt.inCall)
		}
	}
	// every state a modem line publishes is one of these
	for s := modem.StateOpening; s <= modem.StateDown; s++ {
		if name := bus.LineStatus(strings.ToLower(s.String())); !known[name] {
			t.Errorf("modem state %v is published as %q, which bus does not define", s, name)
		}
	}
}

func TestLinkPhaseNames(t *testing.T) {
	known := map[bus.LinkPhase]bool{bus.LinkDead: true, bus.LinkEstablish: true, bus.LinkAuthenticate: true,
		bus.LinkNetwork: true, bus.LinkRunning: true, bus.LinkTerminate: true}
	for p := ppp.PhaseDead; p <= ppp.PhaseTerminate; p++ {
		if !known[bus.LinkPhase(p.String())] {
			t.Errorf("ppp phase %d is published as %q, which bus does not define", p, p.String())
		}
	}
}

// A drop reason's metric name is stable and label-safe; its text is prose.
func TestDropReasonMetric(t *testing.T) {
	label := regexp.MustCompile(`^net\.dropped\.[a-z][a-z0-9_]*$`)
	for _, r := range []bus.DropReason{bus.DropSpoofed, bus.DropIsolated, bus.DropMalformed, bus.DropNoRoute,
		bus.DropForbidden, bus.DropPingDenied, bus.DropTTL, bus.DropFlowLimit} {
		if !label.MatchString(r.Metric()) {
			t.Errorf("%q.Metric() = %q, not a metric name", string(r), r.Metric())
		}
		if r.String() == string(r) {
			t.Errorf("%q has no text for people", string(r))
		}
	}
	if got := bus.DropNoRoute.Metric(); got != "net.dropped.no_route" {
		t.Errorf("metric name changed: %q", got)
	}
	ev := bus.NetDropped{Session: "s1", Reason: bus.DropSpoofed, Count: 3}
	if got, want := ev.String(), "Net: session s1 dropped 3 packets: spoofed source address"; got != want {
		t.Errorf("NetDropped.String() = %q, want %q", got, want)
	}
}
