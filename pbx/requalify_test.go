package pbx

import (
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
)

// An ATA registers while it still boots (its OPTIONS go unanswered: the
// box marks it UNREACHABLE), then reboots and registers again from the
// same address. The REGISTER makes the box qualify it at once, and a call
// placed right after the REGISTER waits for that poke instead of failing
// with 503 until the next scheduled poke (issue: up to 10 s).
func TestSippRebootedATARequalified(t *testing.T) {
	needSipp(t)
	// 150 ms: the call arrives while the poke is in flight and waits for it
	for _, delay := range []int{0, 150} {
		t.Run(fmt.Sprintf("OPTIONS answered after %d ms", delay), func(t *testing.T) { rebootedATA(t, delay) })
	}
}

func rebootedATA(t *testing.T, delay int) {
	cfg := testConfig("")
	cfg.Peers[0].Qualify = 500 // room for a loaded machine: the ATA's 150 ms must stay OK
	cfg.Peers[0].QualifyFreq = 60 * time.Second
	box := startBox(t, cfg, nil)
	port := testutil.FreeUDPPortBelowEphemeral(t)

	registerLine(t, box, ispLine, port) // sipp exits: nobody answers the OPTIONS
	waitPeer(t, box.Server, ispLine, 5*time.Second, func(p PeerInfo) bool { return p.Status == "UNREACHABLE" })

	d := defaults(ispLine)
	d.Hold, d.Delay = 8000, delay
	ata := startSipp(t, scenario(t, "ata_reboot.xml", d), port, box.Addr().String(),
		"-oocsf", scenario(t, "ata_ooc.xml", d))
	box.ev.wait(t, 10*time.Second, func(e bus.Event) bool {
		r, ok := e.(bus.PeerRegistered)
		return ok && r.Peer == ispLine && r.Refresh
	})
	registered := time.Now()

	cli := newRawUA(t, box.Addr())
	cli.sendInviteAuth(clientLine, "88567682", "reboot@x", "", testSDP)
	ok200 := cli.final(10 * time.Second)
	if ok200 == nil || ok200.StatusCode != 200 {
		t.Fatalf("call right after the ATA's new REGISTER: %v (peer %+v)", ok200, peerByName(box.Server, ispLine))
	}
	t.Logf("re-REGISTER to answered call: %s", time.Since(registered).Round(time.Millisecond))
	rc := &rawCall{box: box, cli: cli, ok200: ok200}
	cli.send(rc.fromCaller(sip.ACK, 2), "")
	cli.send(rc.fromCaller(sip.BYE, 3), "")
	if r := cli.final(5 * time.Second); r == nil || r.StatusCode != 200 {
		t.Fatalf("BYE: %v", r)
	}
	if ev := mustEnded(t, box); ev.Status != "ANSWER" || ev.Callee != ispLine {
		t.Errorf("CallEnded = %+v", ev)
	}
	if p := peerByName(box.Server, ispLine); !okStatus.MatchString(p.Status) {
		t.Errorf("ATA status after the call: %s", p.Status)
	}
	ata.wait(t, 15*time.Second)
}
