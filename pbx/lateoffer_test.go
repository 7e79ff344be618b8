package pbx

import (
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
	isp := registeredUA(t, box.Addr(), ispLine, "")
	cli := newRawUA(t, box.Addr())
	cli.sendInviteAuth(clientLine, "88567682", "late@x", "", "")

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
	cli.send(sipReq{method: sip.ACK, uri: ok200.Contact().Address.String(), via: cli.addr(),
		from: ok200.From().Value(), to: ok200.To().Value(), callID: "late@x", cseq: 2,
		hdrs: []string{"Content-Type: application/sdp"}}.String(), answer)

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
