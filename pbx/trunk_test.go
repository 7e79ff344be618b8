package pbx

import (
	"strconv"
	"strings"
	"testing"

	"github.com/isp-box/isp-box/internal/sim/kamailiotest"
	"github.com/isp-box/isp-box/internal/testutil"
)

// TestTrunkOutboundCall (issue 14): a call from a line to the provider
// peer: Kamailio challenges the INVITE with 407, the box answers with the
// peer's defaultuser and secret and sends the call From its fromuser; the
// provider routes it to the callee (a sipp UAS), which answers.
func TestTrunkOutboundCall(t *testing.T) {
	needSipp(t)
	const did, number = "5551000", "4930999"
	uasPort, cliPort := testutil.FreeUDPPortBelowEphemeral(t), testutil.FreeUDPPortBelowEphemeral(t)
	prov := kamailiotest.Start(t, kamailiotest.Options{Users: map[string]string{did: "provsecret"},
		Algorithm: "SHA-256", Forward: map[string]string{number: "127.0.0.1:" + strconv.Itoa(uasPort)}})
	cfg := testConfig("Dial(SIP/provider/" + number + ",20)")
	p := DefaultPeer("provider")
	p.Type, p.Host, p.Secret, p.Username = "peer", prov.Addr(), "provsecret", did
	p.FromUser, p.FromDomain, p.Insecure, p.Context = did, "127.0.0.1", "port,invite", "default"
	p.File, p.Line = "sip.conf", 40
	cfg.Peers = append(cfg.Peers, p)
	box := startBox(t, cfg, nil)
	registerLine(t, box, clientLine, cliPort)

	d := defaults("callee")
	c := defaults(clientLine)
	c.Exten, c.Hold = number, 500
	uas, uac := sippCall(t, box, uasPort, cliPort, sippLeg{"uas_answer.xml", d}, sippLeg{"uac_call.xml", c})
	waitSipp(t, uac, uas)
	log := prov.Log()
	if !strings.Contains(log, "challenging INVITE from "+did) || !strings.Contains(log, "authenticated INVITE from "+did+" to "+number) {
		t.Errorf("Kamailio did not challenge and accept the box's INVITE:\n%s", prov.LogTail(30))
	}
}
