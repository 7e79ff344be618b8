package pbx

import (
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/testutil"
)

func twoModems(dial string) Config {
	cfg := testConfig(dial)
	m2 := DefaultPeer("modem2")
	m2.Secret, m2.Host, m2.NAT, m2.HuntGroup = secret, "dynamic", "no", "modems"
	cfg.Peers[0].HuntGroup = "modems"
	return withPeer(cfg, m2)
}

func withPeer(cfg Config, p Peer) Config {
	cfg.Peers = append(cfg.Peers, p)
	return cfg
}

// Two modem lines, each with a sipp UAS, and a sipp caller: modem2
// answers and gets the call in both cases.
//   - Dial(SIP/a&SIP/b) rings both; the first to answer gets the call and
//     the other is CANCELled (its sipp scenario expects the CANCEL).
//   - In a hunt group a member that answers busy passes the call to the next.
func TestSippTwoModems(t *testing.T) {
	for _, tt := range []struct {
		name, dial string
		first      string // the ISP line's scenario
		ringFor    int    // modem2's ring time before it answers, ms
	}{
		{"parallel dial", "Dial(SIP/" + ispLine + "&SIP/modem2,20)", "uas_ring.xml", 500},
		{"hunt busy member", "Dial(HUNT/modems,20)", "uas_busy.xml", 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			needSipp(t)
			box := startBox(t, twoModems(tt.dial), nil)
			p1, p2, pc := testutil.FreeUDPPortBelowEphemeral(t), testutil.FreeUDPPortBelowEphemeral(t), testutil.FreeUDPPortBelowEphemeral(t)
			registerLine(t, box, ispLine, p1)
			registerLine(t, box, "modem2", p2)
			registerLine(t, box, clientLine, pc)
			first := startSipp(t, scenario(t, tt.first, defaults(ispLine)), p1, "")
			d := defaults("modem2")
			d.RingFor = tt.ringFor
			answerer := startSipp(t, scenario(t, "uas_answer.xml", d), p2, "")
			uac := startSipp(t, scenario(t, "uac_call.xml", defaults(clientLine)), pc, box.Addr().String())
			waitSipp(t, uac, answerer, first)
			if ev := mustEnded(t, box); ev.Callee != "modem2" || ev.Status != "ANSWER" {
				t.Errorf("CallEnded = %+v", ev)
			}
			noCallsLeft(t, box)
		})
	}
}

// An answer slower than qualify= but within 2x is LAGGED (chan_sip), and a
// LAGGED peer is not dialled.
func TestSippQualifyLagged(t *testing.T) {
	needSipp(t)
	cfg := testConfig("")
	cfg.Peers[0].Qualify = 100
	cfg.Peers[0].QualifyFreq = time.Second
	box := startBox(t, cfg, nil)
	port := testutil.FreeUDPPortBelowEphemeral(t)
	registerLine(t, box, ispLine, port)
	d := defaults(ispLine)
	d.Delay = 150
	startSipp(t, scenario(t, "uas_options.xml", d), port, "", "-m", "1000")
	// The REGISTER is qualified at once, before sipp answers on the port:
	// UNREACHABLE first, and chan_sip pokes an unreachable peer again only
	// after 10 s (DEFAULT_FREQ_NOTOK); then LAGGED. 30 s leaves room for a
	// loaded machine.
	p := waitPeer(t, box.Server, ispLine, 30*time.Second, func(p PeerInfo) bool { return len(p.Status) > 6 && p.Status[:6] == "LAGGED" })
	if !p.Online {
		t.Errorf("LAGGED counts online in chan_sip's summary: %+v", p)
	}
	cli := newRawUA(t, box.Addr())
	r := cli.inviteAuth(clientLine, "88567682", "lag@x")
	if r == nil || r.StatusCode != 503 {
		t.Errorf("call to a LAGGED peer: %v", r)
	}
}
