package pbx

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

// withTimers sets the caller's (pap2t-client) session timer settings;
// the callee keeps the defaults (its probes are 15 min away).
func withTimers(cfg Config, mode string, expires, minSE time.Duration) Config {
	for i := range cfg.Peers {
		if cfg.Peers[i].Name == clientLine {
			cfg.Peers[i].SessionTimers, cfg.Peers[i].SessionExpires, cfg.Peers[i].SessionMinSE = mode, expires, minSE
		}
	}
	return cfg
}

func endedWhy(t *testing.T, box *testBox, d time.Duration) bus.CallEnded {
	t.Helper()
	return box.ev.wait(t, d, callEnded).(bus.CallEnded)
}

// A caller asking for a session interval below Min-SE gets 422 with our
// Min-SE (RFC 4028 §8.1); asking for one within gets it stated in the 200
// with Require: timer, and the box (refresher=uas) refreshes it with a
// re-INVITE carrying the same SDP. A 481 to the refresh ends the call:
// BYE to the callee, and the record says why (RFC 4028 §10).
func TestSessionTimerCaller(t *testing.T) {
	t.Run("422 below Min-SE", func(t *testing.T) {
		box := startBox(t, testConfig(""), nil)
		cli := newRawUA(t, box.Addr())
		cli.sendInviteAuth(clientLine, "88567682", "se422@x", "Supported: timer\nSession-Expires: 60", testSDP)
		res := cli.final(5 * time.Second)
		if res == nil || res.StatusCode != 422 || res.GetHeader("Min-SE") == nil || res.GetHeader("Min-SE").Value() != "90" {
			t.Fatalf("got %v, want 422 with Min-SE: 90", res)
		}
	})
	t.Run("refresh refused with 481", func(t *testing.T) {
		cfg := withTimers(testConfig(""), timersAccept, 2*time.Second, time.Second)
		rc := newRawCallWith(t, cfg, "Supported: timer\nSession-Expires: 2")
		se := rc.ok200.GetHeader("Session-Expires")
		if se == nil || se.Value() != "2;refresher=uas" || rc.ok200.GetHeader("Require") == nil {
			t.Fatalf("200 to the caller states no session timer: %v", rc.ok200)
		}
		start := time.Now()
		ref := rc.cli.nextRequest(t, sip.INVITE)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("refresh after %s, want about half the interval", d)
		}
		if !strings.Contains(string(ref.Body()), "m=audio 16482") || ref.GetHeader("Session-Expires") == nil {
			t.Fatalf("refresh re-INVITE:\n%v", ref)
		}
		rc.cli.sendRaw([]byte(sip.NewResponseFromRequest(ref, 481, "Call/Transaction Does Not Exist", nil).String()))
		rc.isp.nextRequest(t, sip.BYE)
		ev := endedWhy(t, rc.box, 5*time.Second)
		if ev.HangupBy != "box" || !strings.Contains(ev.Reason, "caller answered the session refresh INVITE with 481") {
			t.Fatalf("CallEnded = %+v", ev)
		}
		rc.expect(t, "", 0)
	})
	t.Run("refresh answered keeps the call", func(t *testing.T) {
		cfg := withTimers(testConfig(""), timersAccept, 2*time.Second, time.Second)
		rc := newRawCallWith(t, cfg, "Supported: timer\nSession-Expires: 2\nAllow: INVITE, ACK, BYE, CANCEL, UPDATE")
		for i := 0; i < 2; i++ {
			up := rc.cli.nextRequest(t, sip.UPDATE)
			res := sip.NewResponseFromRequest(up, 200, "OK", nil)
			res.AppendHeader(sip.NewHeader("Session-Expires", "2;refresher=uac"))
			rc.cli.sendRaw([]byte(res.String()))
		}
		rc.expect(t, "up", 2)
		rc.cli.send(rc.fromCaller(sip.BYE, 3), "")
		rc.isp.nextRequest(t, sip.BYE)
		if ev := endedWhy(t, rc.box, 5*time.Second); ev.HangupBy != "caller" || ev.Reason != "" {
			t.Fatalf("CallEnded = %+v", ev)
		}
	})
	t.Run("caller refreshes, then stops", func(t *testing.T) {
		cfg := withTimers(testConfig(""), timersAccept, 3*time.Second, time.Second)
		rc := newRawCallWith(t, cfg, "Supported: timer\nSession-Expires: 3;refresher=uac")
		if se := rc.ok200.GetHeader("Session-Expires"); se == nil || se.Value() != "3;refresher=uac" {
			t.Fatalf("200: %v", rc.ok200)
		}
		start := time.Now()
		rc.isp.nextRequest(t, sip.BYE) // nobody refreshed: the box ends it
		ev := endedWhy(t, rc.box, 5*time.Second)
		if !strings.Contains(ev.Reason, "session timer expired: the caller did not refresh") {
			t.Fatalf("CallEnded = %+v", ev)
		}
		if d := time.Since(start); d < 1500*time.Millisecond {
			t.Errorf("ended after %s, before the refresh was due", d)
		}
	})
}

// With no session timer on either dialog the box probes both with
// in-dialog OPTIONS; a modem line that carries no call ends the call
// after the grace; with relayed media rtptimeout ends a silent call.
func TestDeadCallDetection(t *testing.T) {
	t.Run("OPTIONS probe unanswered", func(t *testing.T) {
		cfg := withTimers(testConfig(""), timersAccept, 2*time.Second, time.Second)
		cfg.Peers[0].SessionExpires = 2 * time.Second // the callee's dialog is probed as often
		rc := newRawCallWith(t, cfg, "")
		opt := rc.cli.nextRequest(t, sip.OPTIONS) // the caller answers its probe
		rc.cli.sendRaw([]byte(sip.NewResponseFromRequest(opt, 200, "OK", nil).String()))
		rc.isp.nextRequest(t, sip.OPTIONS) // the callee's goes unanswered
		rc.cli.nextRequest(t, sip.BYE)
		ev := endedWhy(t, rc.box, 10*time.Second)
		if !strings.Contains(ev.Reason, "no answer from the callee to the probe OPTIONS") {
			t.Fatalf("CallEnded = %+v", ev)
		}
	})
	t.Run("modem line idle", func(t *testing.T) {
		cfg := testConfig("")
		cfg.General.LineIdleGrace = time.Second
		rc := newRawCallWith(t, cfg, "")
		rc.box.bus.Publish(bus.LineState{Line: "ttyUSB0", Peer: ispLine, State: bus.LineConnected})
		rc.box.bus.Publish(bus.LineState{Line: "ttyUSB0", Peer: ispLine, State: bus.LineHangingup})
		time.Sleep(1500 * time.Millisecond)
		rc.expect(t, "up", 2) // busy lines are fine
		rc.box.bus.Publish(bus.LineState{Line: "ttyUSB0", Peer: ispLine, State: bus.LineIdle})
		rc.isp.nextRequest(t, sip.BYE)
		rc.cli.nextRequest(t, sip.BYE)
		ev := endedWhy(t, rc.box, 5*time.Second)
		if !strings.Contains(ev.Reason, "modem line of "+ispLine+" has carried no call") {
			t.Fatalf("CallEnded = %+v", ev)
		}
	})
	t.Run("rtptimeout", func(t *testing.T) {
		cfg := testConfig("")
		cfg.Peers[0].DirectMedia = false
		cfg.Peers[0].RTPTimeout = 2 * time.Second
		rc := newRawCallWith(t, cfg, "")
		if !strings.Contains(string(rc.inv.Body()), "c=IN IP4 127.0.0.1") {
			t.Fatalf("media not relayed:\n%s", rc.inv.Body())
		}
		rc.isp.nextRequest(t, sip.BYE)
		ev := endedWhy(t, rc.box, 5*time.Second)
		if !strings.Contains(ev.Reason, "no RTP from the callee for 2s (rtptimeout)") {
			t.Fatalf("CallEnded = %+v", ev)
		}
	})
}

func TestOnHold(t *testing.T) {
	for _, tt := range []struct {
		sdp  string
		want bool
	}{{testSDP, false}, {testSDP + "a=sendonly\r\n", true}, {testSDP + "a=inactive\r\n", true},
		{"v=0\r\nc=IN IP4 0.0.0.0\r\n", true}, {testSDP + "a=sendrecv\r\n", false}} {
		if got := onHold([]byte(tt.sdp)); got != tt.want {
			t.Errorf("onHold(%q) = %v", tt.sdp, got)
		}
	}
}

// Two sipp parties in a direct-media call are killed mid-call (no BYE, no
// RTP through the box). The in-dialog OPTIONS probes go unanswered and the
// box ends the call, with BYE and a record that says why.
func TestSippVanishedPartiesCleanedUp(t *testing.T) {
	needSipp(t)
	cfg := testConfig("")
	for i := range cfg.Peers {
		cfg.Peers[i].SessionExpires = 10 * time.Second // probe every 5 s, 5 s to answer
	}
	box := startBox(t, cfg, nil)
	ispPort, cliPort := registerBoth(t, box)
	c := defaults(clientLine)
	c.Hold = 120000
	uas, uac := sippCall(t, box, ispPort, cliPort, sippLeg{"uas_answer.xml", defaults(ispLine)}, sippLeg{"uac_call.xml", c}, "-aa")
	box.ev.wait(t, 10*time.Second, func(e bus.Event) bool { _, ok := e.(bus.CallAnswered); return ok })
	uac.kill()
	uas.kill()
	killed := time.Now()
	ev := endedWhy(t, box, 30*time.Second)
	t.Logf("vanished call cleaned up %s after both parties were killed: %s", time.Since(killed).Round(100*time.Millisecond), ev.Reason)
	if ev.HangupBy != "box" || !strings.Contains(ev.Reason, "no answer from the") {
		t.Fatalf("CallEnded = %+v", ev)
	}
	noCallsLeft(t, box)
}

// session-timers=originate asks the callee for a timer; its 422 with a
// larger Min-SE makes the box send the INVITE again with that interval
// (RFC 4028 §7.4), and the call goes through.
func TestSessionTimerCallee422(t *testing.T) {
	cfg := testConfig("")
	cfg.Peers[0].SessionTimers = timersOriginate
	box := startBox(t, cfg, nil)
	isp := registeredUA(t, box.Addr(), ispLine, "")
	cli := newRawUA(t, box.Addr())
	cli.sendInviteAuth(clientLine, "88567682", "c422@x", "", testSDP)
	inv := isp.nextRequest(t, sip.INVITE)
	if se := inv.GetHeader("Session-Expires"); se == nil || se.Value() != "1800" || !supportsTimer(inv) || inv.GetHeader("Min-SE") == nil {
		t.Fatalf("INVITE asks for no session timer:\n%v", inv)
	}
	res := sip.NewResponseFromRequest(inv, 422, "Session Interval Too Small", nil)
	res.AppendHeader(sip.NewHeader("Min-SE", "3600"))
	isp.sendRaw([]byte(res.String()))
	inv2 := isp.nextRequest(t, sip.INVITE)
	if inv2.CSeq().SeqNo != inv.CSeq().SeqNo+1 || inv2.CallID().Value() != inv.CallID().Value() ||
		inv2.GetHeader("Session-Expires").Value() != "3600" || inv2.GetHeader("Min-SE").Value() != "3600" {
		t.Fatalf("retry after 422:\n%v", inv2)
	}
	ok := sip.NewResponseFromRequest(inv2, 200, "OK", []byte(calleeSDP))
	ok.To().Params.Add("tag", "isp1")
	ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: ispLine, Host: "127.0.0.1", Port: isp.port()}})
	ok.AppendHeader(sip.NewHeader("Session-Expires", "3600;refresher=uas"))
	ok.AppendHeader(sip.NewHeader("Require", "timer"))
	ct := sip.ContentTypeHeader("application/sdp")
	ok.AppendHeader(&ct)
	isp.sendRaw([]byte(ok.String()))
	if r := cli.final(5 * time.Second); r == nil || r.StatusCode != 200 {
		t.Fatalf("caller got %v", r)
	}
	box.ev.wait(t, 5*time.Second, func(e bus.Event) bool { _, ok := e.(bus.CallAnswered); return ok })
	c := box.Calls()
	if len(c) != 1 {
		t.Fatalf("calls: %+v", c)
	}
	box.mu.Lock()
	call := box.calls[c[0].ID]
	box.mu.Unlock()
	call.mu.Lock()
	st := call.legs[sideCallee].st
	call.mu.Unlock()
	if !st.negotiated || st.boxRefresh || st.interval != time.Hour {
		t.Errorf("callee's session timer: %+v", st)
	}
}

// callerTimer follows RFC 4028 §9 for the box as UAS.
func TestCallerTimerNegotiation(t *testing.T) {
	def := policyOf(DefaultPeer("x"))
	for _, tt := range []struct {
		name    string
		policy  timerPolicy
		hdrs    string
		want    string // the 2xx's Session-Expires, "" = none, "422 N" = refused
		boxRefr bool
	}{
		{"no timer asked: probes", def, "", "", true},
		{"asked, supported, no refresher: ours (uas)", def, "Supported: timer\nSession-Expires: 1800", "1800;refresher=uas", true},
		{"asked with refresher=uac", def, "Supported: timer\nSession-Expires: 1800;refresher=uac", "1800;refresher=uac", false},
		{"asked without timer support: we refresh", def, "Session-Expires: 1800;refresher=uac", "1800;refresher=uas", true},
		{"compact form", def, "k: timer\nx: 600", "600;refresher=uas", true},
		{"too long: lowered to ours", def, "Supported: timer\nSession-Expires: 7200", "1800;refresher=uas", true},
		{"too short: 422", def, "Supported: timer\nSession-Expires: 30", "422 90", true},
		{"too short with their Min-SE", def, "Supported: timer\nSession-Expires: 30\nMin-SE: 120", "422 120", true},
		{"refuse", timerPolicy{mode: timersRefuse, expires: time.Hour, minSE: 90 * time.Second, refresher: "uas"}, "Supported: timer\nSession-Expires: 1800", "", true},
		{"originate imposes one", timerPolicy{mode: timersOriginate, expires: 900 * time.Second, minSE: 90 * time.Second, refresher: "uac"}, "Supported: timer", "900;refresher=uac", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := "INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
			if tt.hdrs != "" {
				raw += strings.ReplaceAll(tt.hdrs, "\n", "\r\n") + "\r\n"
			}
			m, err := sip.NewParser().ParseSIP([]byte(raw + "Content-Length: 0\r\n\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			st, hdrs, floor := callerTimer(m.(*sip.Request), tt.policy)
			got := ""
			switch {
			case floor > 0:
				got = "422 " + secs(floor)
			case len(hdrs) > 0:
				got = hdrs[0].Value()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if floor == 0 && st.boxRefresh != tt.boxRefr {
				t.Errorf("box refreshes = %v, want %v", st.boxRefresh, tt.boxRefr)
			}
			if floor == 0 && (len(hdrs) > 0) != st.negotiated {
				t.Errorf("negotiated = %v with headers %v", st.negotiated, hdrs)
			}
		})
	}
}
