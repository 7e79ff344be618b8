package pbx

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// An INVITE without SDP (late offer): the callee's 200 carries the offer,
// the caller's ACK the answer, and that answer reaches the callee in the
// box's ACK (RFC 3264 §4).
func TestLateOfferInvite(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	isp := newRawUA(t, box.Addr())
	isp.registerAuth(ispLine, secret, "")
	cli := newRawUA(t, box.Addr())
	r := cli.invite(clientLine, "88567682", 1, "late@x", "")
	cli.send(inviteText(box.Addr().String(), cli.port(), clientLine, "88567682", 2, "late@x",
		authz(r, clientLine, secret, "INVITE", "sip:88567682@"+box.Addr().String())), "")

	m := isp.recv(5 * time.Second)
	inv, ok := m.(*sip.Request)
	if !ok || inv.Method != sip.INVITE || len(inv.Body()) != 0 {
		t.Fatalf("callee got %v", m)
	}
	offer := "v=0\r\no=- 7 7 IN IP4 127.0.0.60\r\ns=-\r\nc=IN IP4 127.0.0.60\r\nt=0 0\r\nm=audio 16482 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	res := sip.NewResponseFromRequest(inv, 200, "OK", []byte(offer))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: ispLine, Host: "127.0.0.1", Port: isp.port()}})
	ct := sip.ContentTypeHeader("application/sdp")
	res.AppendHeader(&ct)
	isp.sendRaw([]byte(res.String()))

	ok200 := cli.final(5 * time.Second)
	if ok200 == nil || ok200.StatusCode != 200 || !strings.Contains(string(ok200.Body()), "m=audio 16482") {
		t.Fatalf("caller got %v", ok200)
	}
	answer := "v=0\r\no=- 8 8 IN IP4 127.0.0.50\r\ns=-\r\nc=IN IP4 127.0.0.50\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	cli.send(fmt.Sprintf(`
ACK %s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s
From: %s
To: %s
Call-ID: late@x
CSeq: 2 ACK
Max-Forwards: 70
Content-Type: application/sdp`, ok200.Contact().Address.String(), cli.port(), branch(), ok200.From().Value(), ok200.To().Value()), answer)

	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := isp.recv(time.Until(deadline))
		if req, ok := m.(*sip.Request); ok && req.Method == sip.ACK {
			if string(req.Body()) != answer {
				t.Fatalf("callee's ACK body:\n%q\nwant\n%q", req.Body(), answer)
			}
			return
		}
	}
	t.Fatal("the callee got no ACK")
}
