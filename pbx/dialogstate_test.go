package pbx

import (
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
)

// rawCall is an answered call between two raw UAs through the box.
type rawCall struct {
	box      *testBox
	cli, isp *rawUA
	inv      *sip.Request  // the INVITE the callee got
	ok200    *sip.Response // the 200 the caller got
	cliSeq   int
	ispSeq   int
	ispTag   string
}

func newRawCall(t *testing.T) *rawCall {
	t.Helper()
	return newRawCallWith(t, testConfig(""), "")
}

// newRawCallWith is newRawCall with a config and extra headers in the
// caller's INVITE (lines without the final newline).
func newRawCallWith(t *testing.T, cfg Config, extra string) *rawCall {
	t.Helper()
	box := startBox(t, cfg, nil)
	isp := registeredUA(t, box.Addr(), ispLine, "")
	cli := newRawUA(t, box.Addr())
	callID := fmt.Sprintf("raw-%d@x", cli.port())
	cli.sendInviteAuth(clientLine, "88567682", callID, extra, testSDP)
	inv := isp.nextRequest(t, sip.INVITE)
	rc := &rawCall{box: box, cli: cli, isp: isp, inv: inv, cliSeq: 2, ispSeq: 1, ispTag: "isp1"}
	isp.answer(inv, 200, rc.ispTag, calleeSDP)
	rc.ok200 = cli.final(5 * time.Second)
	if rc.ok200 == nil || rc.ok200.StatusCode != 200 {
		t.Fatalf("caller got %v", rc.ok200)
	}
	cli.send(rc.fromCaller(sip.ACK, 2), "")
	isp.nextRequest(t, sip.ACK)
	box.ev.wait(t, 5*time.Second, func(e bus.Event) bool { _, ok := e.(bus.CallAnswered); return ok })
	return rc
}

const calleeSDP = "v=0\r\no=- 7 7 IN IP4 127.0.0.60\r\ns=-\r\nc=IN IP4 127.0.0.60\r\nt=0 0\r\nm=audio 16482 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// fromCaller is an in-dialog request of the caller (RFC 3261 §12.2.1.1).
func (rc *rawCall) fromCaller(m sip.RequestMethod, cseq int) string {
	return inDialog(m, cseq, rc.ok200.Contact().Address.String(), rc.cli.port(), rc.ok200.From().Value(),
		rc.ok200.To().Value(), rc.ok200.CallID().Value(), clientLine)
}

// fromCallee is an in-dialog request of the callee.
func (rc *rawCall) fromCallee(m sip.RequestMethod, cseq int) string {
	return inDialog(m, cseq, rc.inv.Contact().Address.String(), rc.isp.port(), rc.inv.To().Value()+";tag="+rc.ispTag,
		rc.inv.From().Value(), rc.inv.CallID().Value(), ispLine)
}

// inDialog is a request within a dialog to target, sent from a UA at
// 127.0.0.1:port as user; an INVITE says its body is SDP.
func inDialog(m sip.RequestMethod, cseq int, target string, port int, from, to, callID, user string) string {
	hdrs := []string{fmt.Sprintf("Contact: <sip:%s@127.0.0.1:%d>", user, port)}
	if m == sip.INVITE {
		hdrs = append(hdrs, "Content-Type: application/sdp")
	}
	return sipReq{method: m, uri: target, via: fmt.Sprintf("127.0.0.1:%d", port), rport: true,
		from: from, to: to, callID: callID, cseq: cseq, hdrs: hdrs}.String()
}

// nextRequest returns the next request with method m, answering nothing.
func (u *rawUA) nextRequest(t *testing.T, m sip.RequestMethod) *sip.Request {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if req, ok := u.recv(time.Until(deadline)).(*sip.Request); ok && req.Method == m {
			return req
		}
	}
	t.Fatalf("no %s within 5s", m)
	return nil
}

// answer responds to req, adding our To-tag and Contact.
func (u *rawUA) answer(req *sip.Request, code int, tag, body string) {
	res := sip.NewResponseFromRequest(req, code, map[int]string{200: "OK"}[code], []byte(body))
	res.To().Params.Add("tag", tag) // sipgo made one up
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: ispLine, Host: "127.0.0.1", Port: u.port()}})
	if body != "" {
		ct := sip.ContentTypeHeader("application/sdp")
		res.AppendHeader(&ct)
	}
	u.sendRaw([]byte(res.String()))
}

// callState waits until the box shows the one call in state want
// ("" = no call), and checks the peers' call counts.
func (rc *rawCall) expect(t *testing.T, want string, calls int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := ""
		if cs := rc.box.Calls(); len(cs) == 1 {
			got = string(cs[0].State)
		}
		n := 0
		for _, p := range rc.box.Peers() {
			n += p.Calls
		}
		if got == want && n == calls {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("call state %q with %d peer calls, want %q with %d", got, n, want, calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func endedCount(box *testBox) int {
	box.ev.mu.Lock()
	defer box.ev.mu.Unlock()
	n := 0
	for _, e := range box.ev.evs {
		if callEnded(e) {
			n++
		}
	}
	return n
}

// Both sides send a re-INVITE at once: the second gets 491 (RFC 3261
// §14.2), the first completes and the call stays up.
func TestReinviteGlare(t *testing.T) {
	rc := newRawCall(t)
	rc.cli.send(rc.fromCaller(sip.INVITE, 3), testSDP)
	reinv := rc.isp.nextRequest(t, sip.INVITE)
	rc.isp.send(rc.fromCallee(sip.INVITE, 2), calleeSDP)
	if r := rc.isp.final(5 * time.Second); r == nil || r.StatusCode != 491 {
		t.Fatalf("the callee's crossing re-INVITE got %v, want 491", r)
	}
	rc.expect(t, "up", 2)
	rc.isp.answer(reinv, 200, rc.ispTag, calleeSDP)
	if r := rc.cli.final(5 * time.Second); r == nil || r.StatusCode != 200 {
		t.Fatalf("the caller's re-INVITE got %v", r)
	}
	rc.cli.send(rc.fromCaller(sip.ACK, 3), "")
	rc.isp.nextRequest(t, sip.ACK)
	// over: a new re-INVITE from the callee goes through now
	rc.calleeReinviteThenBye(t, 3, 4)
}

// calleeReinviteThenBye: the callee re-INVITEs with G.711 (relayed to the
// caller, which accepts), then the caller hangs up.
func (rc *rawCall) calleeReinviteThenBye(t *testing.T, ispSeq, cliSeq int) {
	t.Helper()
	rc.isp.send(rc.fromCallee(sip.INVITE, ispSeq), calleeSDP)
	inv := rc.cli.nextRequest(t, sip.INVITE)
	res := sip.NewResponseFromRequest(inv, 200, "OK", []byte(testSDP))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: clientLine, Host: "127.0.0.1", Port: rc.cli.port()}})
	ct := sip.ContentTypeHeader("application/sdp")
	res.AppendHeader(&ct)
	rc.cli.sendRaw([]byte(res.String()))
	if r := rc.isp.final(5 * time.Second); r == nil || r.StatusCode != 200 {
		t.Fatalf("the callee's re-INVITE got %v", r)
	}
	rc.cli.send(rc.fromCaller(sip.BYE, cliSeq), "")
	rc.isp.nextRequest(t, sip.BYE)
	rc.expect(t, "", 0)
}

// A BYE while a re-INVITE is pending ends the call at once; the late 200
// to the re-INVITE does not bring it back.
func TestByeDuringReinvite(t *testing.T) {
	rc := newRawCall(t)
	rc.cli.send(rc.fromCaller(sip.INVITE, 3), testSDP)
	reinv := rc.isp.nextRequest(t, sip.INVITE)
	rc.expect(t, "up", 2)
	rc.cli.send(rc.fromCaller(sip.BYE, 4), "")
	rc.isp.nextRequest(t, sip.BYE)
	rc.expect(t, "", 0)
	rc.isp.answer(reinv, 200, rc.ispTag, calleeSDP)
	rc.isp.nextRequest(t, sip.ACK) // the box completes the callee's transaction
	time.Sleep(200 * time.Millisecond)
	rc.expect(t, "", 0)
	if n := endedCount(rc.box); n != 1 {
		t.Fatalf("CallEnded published %d times", n)
	}
	if ev := mustEnded(t, rc.box); ev.Status != "ANSWER" || ev.HangupBy != "caller" {
		t.Fatalf("CallEnded = %+v", ev)
	}
}

// A CANCEL after the 200 has no effect on the call (RFC 3261 §9.2).
func TestCancelAfterAnswer(t *testing.T) {
	rc := newRawCall(t)
	br, _ := rc.ok200.Via().Params.Get("branch")
	rc.cli.send(sipReq{method: sip.CANCEL, uri: "sip:88567682@" + rc.box.Addr().String(), via: rc.cli.addr(), branch: br, rport: true,
		from: rc.ok200.From().Value(), to: "<sip:88567682@" + rc.box.Addr().String() + ">",
		callID: rc.ok200.CallID().Value(), cseq: 2}.String(), "")
	rc.cli.final(2 * time.Second) // 200 or 481: either way nothing changes
	time.Sleep(200 * time.Millisecond)
	rc.expect(t, "up", 2)
	if n := endedCount(rc.box); n != 0 {
		t.Fatalf("the CANCEL ended the call")
	}
	rc.isp.send(rc.fromCallee(sip.BYE, 2), "")
	rc.cli.nextRequest(t, sip.BYE)
	rc.expect(t, "", 0)
	if ev := mustEnded(t, rc.box); ev.Status != "ANSWER" || ev.HangupBy != "callee" {
		t.Fatalf("CallEnded = %+v", ev)
	}
}
