package pbx

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/testutil"
)

// The seed call: the client line calls 88567682, the ISP line gets the
// caller's SDP unchanged, rings, answers; ACK; the caller hangs up.
func TestSippCallDirectMedia(t *testing.T) {
	box, ispPort, cliPort := sippBox(t)

	d := defaults(ispLine)
	d.CheckSDP = true
	c := defaults(clientLine)
	c.Hold = 1500
	uas, uac := sippCall(t, box, ispPort, cliPort, sippLeg{"uas_answer.xml", d}, sippLeg{"uac_call.xml", c})
	// while it is up: direct media, no relay sockets, nothing counted
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cs := box.Calls(); len(cs) == 1 && cs[0].State == "up" {
			if ci := cs[0]; ci.MediaMode != "direct" || ci.RelayCaller.IsValid() || ci.Packets != 0 || ci.Codec != "ulaw" || ci.To != ispLine {
				t.Errorf("live call: %+v", ci)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitSipp(t, uac, uas)

	ev := mustEnded(t, box)
	if ev.Status != "ANSWER" || ev.SIPCode != 200 || ev.HangupBy != "caller" || ev.Callee != ispLine || ev.From != clientLine || ev.To != "88567682" || ev.MediaMode != "direct" || ev.Codec != "ulaw" {
		t.Errorf("CallEnded = %+v", ev)
	}
	if ev.Answer.IsZero() || ev.End.Before(ev.Answer) {
		t.Errorf("times: %+v", ev)
	}
	noCallsLeft(t, box)
	// The SDP the callee got: c= and m= exactly as the caller wrote them.
	got := sdpOfFirstInvite(t, uas.messages())
	for _, want := range []string{"c=IN IP4 127.0.0.50", "m=audio 16384 RTP/AVP 0 8 100 101", "a=rtpmap:100 NSE/8000", "a=ptime:30"} {
		if !strings.Contains(got, want+"\r\n") && !strings.Contains(got, want+"\n") {
			t.Errorf("callee SDP lacks %q:\n%s", want, got)
		}
	}
	// and the caller got the callee's, unchanged too
	if got := uac.messages(); !strings.Contains(got, "m=audio 16482 RTP/AVP 0 101") || !strings.Contains(got, "c=IN IP4 127.0.0.60") {
		t.Errorf("caller did not get the callee's SDP unchanged")
	}
}

// sdpOfFirstInvite extracts the body of the first INVITE in a sipp message log.
func sdpOfFirstInvite(t *testing.T, log string) string {
	t.Helper()
	i := strings.Index(log, "INVITE sip:")
	if i < 0 {
		t.Fatalf("no INVITE in log:\n%s", log)
	}
	m := regexp.MustCompile(`(?s)\r?\n\r?\n(v=0.*?)(\r?\n\r?\n|-----)`).FindStringSubmatch(log[i:])
	if m == nil {
		t.Fatalf("no SDP after INVITE:\n%s", log[i:])
	}
	return m[1]
}

func TestSippReinviteBothWays(t *testing.T) {
	box, ispPort, cliPort := sippBox(t)
	d := defaults(ispLine)
	d.Reinvite = true
	c := defaults(clientLine)
	c.Reinvite = true
	uas, uac := sippCall(t, box, ispPort, cliPort, sippLeg{"uas_answer.xml", d}, sippLeg{"uac_call.xml", c})
	waitSipp(t, uac, uas)
	if ev := mustEnded(t, box); ev.Status != "ANSWER" || ev.HangupBy != "caller" {
		t.Errorf("CallEnded = %+v", ev)
	}
}

func TestSippCancelWhileRinging(t *testing.T) {
	box, ispPort, cliPort := sippBox(t)
	uas, uac := sippCall(t, box, ispPort, cliPort, sippLeg{"uas_ring.xml", defaults(ispLine)}, sippLeg{"uac_cancel.xml", defaults(clientLine)})
	waitSipp(t, uac, uas) // the callee was CANCELled
	if ev := mustEnded(t, box); ev.Status != "CANCEL" || ev.SIPCode != 487 || ev.HangupBy != "caller" {
		t.Errorf("CallEnded = %+v", ev)
	}
	noCallsLeft(t, box)
}

// failCase runs one call that must end with an error response to the caller.
func failCase(t *testing.T, dial string, uasScenario string, registerISP bool, code int, status string) {
	needSipp(t)
	box := startBox(t, testConfig(dial), nil)
	ispPort, cliPort := testutil.FreeUDPPortBelowEphemeral(t), testutil.FreeUDPPortBelowEphemeral(t)
	if registerISP {
		registerLine(t, box, ispLine, ispPort)
	}
	registerLine(t, box, clientLine, cliPort)
	var uas *sippProc
	if uasScenario != "" {
		uas = startSipp(t, scenario(t, uasScenario, defaults(ispLine)), ispPort, "")
	}
	c := defaults(clientLine)
	c.Code = code
	uac := startSipp(t, scenario(t, "uac_fail.xml", c), cliPort, box.Addr().String())
	waitSipp(t, uac)
	if uas != nil {
		waitSipp(t, uas)
	}
	if ev := mustEnded(t, box); ev.Status != status || ev.SIPCode != code {
		t.Errorf("CallEnded = %+v, want %s %d", ev, status, code)
	}
	noCallsLeft(t, box)
}

// noCallsLeft checks that the call counters went back to zero.
func noCallsLeft(t *testing.T, box *testBox) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		busy := len(box.Calls()) > 0
		for _, p := range box.Peers() {
			busy = busy || p.Calls != 0
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls left: %+v %+v", box.Calls(), box.Peers())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dial timeout with nobody answering: DIALSTATUS NOANSWER, no cause, so
// falling off the dial plan gives chan_sip's 603 Declined.
func TestSippNoAnswer(t *testing.T) {
	failCase(t, "Dial(SIP/"+ispLine+",2)", "uas_ring.xml", true, 603, "NOANSWER")
}

func TestSippCalleeBusy(t *testing.T) {
	failCase(t, "", "uas_busy.xml", true, 486, "BUSY")
}

// An unregistered callee: cause 20, CHANUNAVAIL, auto-fallthrough
// indicates congestion: 503.
func TestSippCalleeUnregistered(t *testing.T) {
	failCase(t, "", "", false, 503, "CHANUNAVAIL")
}
