package pbx

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// FuzzHandleRequest feeds raw datagrams through sipgo's parser into the
// request handlers of a running box (without the panic guard, so that a
// panic fails the fuzz run). Nothing may panic.
func FuzzHandleRequest(f *testing.F) {
	seeds := []string{
		"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1;rport\r\nFrom: <sip:pap2t-client@127.0.0.1>;tag=1\r\nTo: <sip:pap2t-client@127.0.0.1>\r\nCall-ID: a@b\r\nCSeq: 1 REGISTER\r\nContact: <sip:pap2t-client@127.0.0.1:5061>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK2\r\nFrom: <sip:pap2t-client@127.0.0.1>;tag=1\r\nTo: <sip:pap2t-client@127.0.0.1>\r\nCall-ID: a@b\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\nAuthorization: Digest username=\"pap2t-client\", realm=\"asterisk\", nonce=\"00\", uri=\"sip:127.0.0.1\", response=\"x\"\r\nContent-Length: 0\r\n\r\n",
		"INVITE sip:88567682@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK3\r\nFrom: <sip:pap2t-client@127.0.0.1>;tag=1\r\nTo: <sip:88567682@127.0.0.1>\r\nCall-ID: c@d\r\nCSeq: 1 INVITE\r\nMax-Forwards: 0\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
		"BYE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK4\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: e@f\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
		"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK5\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: g@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		"ACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK6\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: e@f\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	s, err := New(testConfig(""), Options{})
	if err != nil {
		f.Fatal(err)
	}
	serve(f, s)
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		req.SetSource("127.0.0.1:5099")
		if !validRequest(req) {
			return
		}
		if _, err := sip.ServerTxKeyMake(req); err != nil {
			return // sipgo's transaction layer answers 400 and never calls us
		}
		tx := siptest.NewServerTxRecorder(req)
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			s.route(req.Method)(req, tx)
		}()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Fatalf("handler did not return for:\n%q", data)
		}
	})
}

func FuzzParseCredentials(f *testing.F) {
	f.Add(`Digest username="pap2t-client", realm="asterisk", nonce="abc", uri="sip:127.0.0.1", response="0123", algorithm=MD5`)
	f.Add(`Digest username="a\"b", nonce=x, uri=y, response=z, qop=auth, nc=00000001, cnonce="c"`)
	f.Add(`Basic abc`)
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseCredentials(v)
		if err == nil && (c.Username == "" || c.Nonce == "" || c.URI == "" || c.Response == "") {
			t.Fatalf("accepted incomplete credentials %+v", c)
		}
	})
}
