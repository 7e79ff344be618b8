package pbx

import (
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
)

// A new Server with the same BindingStore still knows where the lines are
// and routes a call.
func TestSippRestartKeepsBindings(t *testing.T) {
	needSipp(t)
	store := NewMemoryBindings()
	box1 := startBox(t, testConfig(""), store)
	ispPort, cliPort := testutil.FreeUDPPortBelowEphemeral(t), testutil.FreeUDPPortBelowEphemeral(t)
	registerLine(t, box1, ispLine, ispPort)
	registerLine(t, box1, clientLine, cliPort)
	box1.stop()

	box2 := startBox(t, testConfig(""), store)
	for _, n := range []string{ispLine, clientLine} {
		if p := peerByName(box2.Server, n); !p.Host.IsValid() || p.Contact == "" {
			t.Fatalf("%s lost its binding: %+v", n, p)
		}
	}
	uas, uac := sippCall(t, box2, ispPort, cliPort, sippLeg{"uas_answer.xml", defaults(ispLine)}, sippLeg{"uac_call.xml", defaults(clientLine)})
	waitSipp(t, uac, uas)
	if ev := mustEnded(t, box2); ev.Status != "ANSWER" {
		t.Errorf("CallEnded = %+v", ev)
	}
}

// A modem line that is busy gets no INVITE: 486 at once; in a hunt group
// the next free line gets the call.
func TestLineBusyAndHunt(t *testing.T) {
	needSipp(t)
	cfg := testConfig("Dial(HUNT/modems,20)")
	m2 := DefaultPeer("modem2")
	m2.Secret, m2.Host, m2.NAT, m2.HuntGroup = secret, "dynamic", "no", "modems"
	cfg.Peers[0].HuntGroup = "modems" // the ISP line first, modem2 second
	cfg.Peers = append(cfg.Peers, m2)
	box := startBox(t, cfg, nil)

	// the ISP line registers from a socket that records anything sent to it
	isp := registeredUA(t, box.Addr(), ispLine, "")
	m2Port, cliPort := testutil.FreeUDPPortBelowEphemeral(t), testutil.FreeUDPPortBelowEphemeral(t)
	registerLine(t, box, "modem2", m2Port)
	registerLine(t, box, clientLine, cliPort)
	holdLineBusy(t, box.bus, box.Server, bus.LineState{Line: "ttyUSB0", Peer: ispLine, State: "connected"})
	uas, uac := sippCall(t, box, m2Port, cliPort, sippLeg{"uas_answer.xml", defaults("modem2")}, sippLeg{"uac_call.xml", defaults(clientLine)})
	waitSipp(t, uac, uas)
	if ev := mustEnded(t, box); ev.Callee != "modem2" || ev.Status != "ANSWER" {
		t.Errorf("CallEnded = %+v", ev)
	}
	if m := isp.recv(200 * time.Millisecond); m != nil {
		t.Errorf("the busy line got %v", m)
	}
	// Without a hunt group: straight 486, no INVITE.
	box.stop()
	box2 := startBox(t, testConfig(""), nil)
	isp2 := registeredUA(t, box2.Addr(), ispLine, "")
	holdLineBusy(t, box2.bus, box2.Server, bus.LineState{Line: "ttyUSB0", Peer: ispLine, State: "down"})
	cli := newRawUA(t, box2.Addr())
	r := cli.inviteAuth(clientLine, "88567682", "busy@x")
	if r == nil || r.StatusCode != 486 {
		t.Fatalf("want 486, got %v", r)
	}
	if m := isp2.recv(200 * time.Millisecond); m != nil {
		t.Errorf("the busy line got %v", m)
	}
}

// holdLineBusy publishes ev until the PBX holds its peer's line busy: the
// PBX's line watcher may subscribe after the first one went out, and an
// event published before a subscriber exists is not kept for it.
func holdLineBusy(t *testing.T, b *bus.Bus, s *Server, ev bus.LineState) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !peerByName(s, ev.Peer).LineBusy {
		if time.Now().After(deadline) {
			t.Fatalf("the PBX never held %s's line busy after %+v", ev.Peer, ev)
		}
		b.Publish(ev)
		time.Sleep(20 * time.Millisecond)
	}
}
