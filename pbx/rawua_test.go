package pbx

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// rawUA speaks SIP by hand over a loopback UDP socket: it builds exactly
// the bytes a test wants and parses what comes back with sipgo's parser.
type rawUA struct {
	t    *testing.T
	conn *net.UDPConn
	box  netip.AddrPort
	p    *sip.Parser
}

func newRawUA(t *testing.T, box netip.AddrPort) *rawUA {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawUA{t: t, conn: c, box: box, p: sip.NewParser()}
}

func (u *rawUA) port() int { return u.conn.LocalAddr().(*net.UDPAddr).Port }

// addr is the UA's host:port, the sent-by of its Via.
func (u *rawUA) addr() string { return u.conn.LocalAddr().String() }

// registeredUA is a new UA registered as user (the 401 dance); the test
// ends unless the box answers 200.
func registeredUA(t *testing.T, box netip.AddrPort, user, expires string) *rawUA {
	t.Helper()
	u := newRawUA(t, box)
	if r := u.registerAuth(user, secret, expires); r.StatusCode != 200 {
		t.Fatalf("%s REGISTER: %s", user, r.StartLine())
	}
	return u
}

func (u *rawUA) sendRaw(b []byte) {
	u.t.Helper()
	if _, err := u.conn.WriteToUDPAddrPort(b, u.box); err != nil {
		u.t.Fatal(err)
	}
}

// send writes msg with CRLF line ends and a correct Content-Length.
func (u *rawUA) send(msg string, body string) {
	u.t.Helper()
	u.sendRaw(wire(msg, body))
}

// recv returns the next message, nil after d.
func (u *rawUA) recv(d time.Duration) sip.Message {
	u.t.Helper()
	buf := make([]byte, 65535)
	_ = u.conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := u.conn.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	m, err := u.p.ParseSIP(buf[:n])
	if err != nil {
		u.t.Fatalf("unparsable message from the box: %v\n%s", err, buf[:n])
	}
	return m
}

// final returns the next final response, skipping 1xx.
func (u *rawUA) final(d time.Duration) *sip.Response {
	u.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := u.recv(time.Until(deadline))
		if m == nil {
			break
		}
		if r, ok := m.(*sip.Response); ok && r.StatusCode >= 200 {
			return r
		}
	}
	return nil
}

func branch() string { return fmt.Sprintf("z9hG4bK%016x", rand.Uint64()) }

func md5s(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

var nonceRE = regexp.MustCompile(`nonce="([^"]+)"`)

// authz answers a 401 the way an RFC 2617 client without qop does.
func authz(res *sip.Response, user, pass, method, uri string) string {
	h := res.GetHeader("WWW-Authenticate")
	m := nonceRE.FindStringSubmatch(h.Value())
	ha1 := md5s(user + ":asterisk:" + pass)
	ha2 := md5s(method + ":" + uri)
	return fmt.Sprintf(`Digest username="%s", realm="asterisk", nonce="%s", uri="%s", response="%s", algorithm=MD5`,
		user, m[1], uri, md5s(ha1+":"+m[1]+":"+ha2))
}

// register sends a REGISTER (with auth if given) and returns the final
// response. The headers are a PAP2T's: the box does not answer a stranger
// with more bytes than it sent, and a real REGISTER is never that small.
func (u *rawUA) register(user string, cseq int, expires string, contact string, auth string) *sip.Response {
	u.t.Helper()
	if contact == "" {
		contact = fmt.Sprintf("<sip:%s@127.0.0.1:%d>", user, u.port())
	}
	hdrs := []string{"User-Agent: Linksys/PAP2T-5.1.6(LS)", "Allow: ACK, BYE, CANCEL, INFO, INVITE, NOTIFY, OPTIONS, REFER",
		"Supported: x-sipura, replaces"}
	if expires != "" {
		hdrs = append(hdrs, "Expires: "+expires)
	}
	if contact != "-" {
		hdrs = append(hdrs, "Contact: "+contact)
	}
	if auth != "" {
		hdrs = append(hdrs, "Authorization: "+auth)
	}
	u.send(sipReq{method: sip.REGISTER, uri: "sip:" + u.box.String(), via: u.addr(), rport: true,
		from: fmt.Sprintf("<sip:%s@%s>;tag=reg%d", user, u.box, u.port()), to: fmt.Sprintf("<sip:%s@%s>", user, u.box),
		callID: fmt.Sprintf("reg-%s-%d@127.0.0.1", user, u.port()), cseq: cseq, hdrs: hdrs}.String(), "")
	return u.final(5 * time.Second)
}

// registerAuth does the whole 401 dance and expects 200.
func (u *rawUA) registerAuth(user, pass, expires string) *sip.Response {
	u.t.Helper()
	r := u.register(user, 1, expires, "", "")
	if r == nil || r.StatusCode != 401 {
		u.t.Fatalf("REGISTER: want 401, got %v", r)
	}
	r = u.register(user, 2, expires, "", authz(r, user, pass, "REGISTER", "sip:"+u.box.String()))
	if r == nil {
		u.t.Fatal("REGISTER: no answer")
	}
	return r
}

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.50\r\ns=-\r\nc=IN IP4 127.0.0.50\r\nt=0 0\r\nm=audio 16384 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// inviteText is an INVITE as user to exten from 127.0.0.1:port, with
// auth if given; its body is SDP.
func inviteText(box string, port int, user, exten string, cseq int, callID, auth string) string {
	hdrs := []string{fmt.Sprintf("Contact: <sip:%s@127.0.0.1:%d>", user, port), "Content-Type: application/sdp"}
	if auth != "" {
		hdrs = append(hdrs, "Authorization: "+auth)
	}
	return sipReq{method: sip.INVITE, uri: "sip:" + exten + "@" + box, via: fmt.Sprintf("127.0.0.1:%d", port), rport: true,
		from: fmt.Sprintf("<sip:%s@%s>;tag=inv%d", user, box, port), to: fmt.Sprintf("<sip:%s@%s>", exten, box),
		callID: callID, cseq: cseq, hdrs: hdrs}.String()
}

// invite sends an INVITE as user to exten, with auth if given, and
// returns the final response.
func (u *rawUA) invite(user, exten string, cseq int, callID, auth string) *sip.Response {
	u.t.Helper()
	u.send(inviteText(u.box.String(), u.port(), user, exten, cseq, callID, auth), testSDP)
	return u.final(5 * time.Second)
}

// sendInviteAuth sends an INVITE as user to exten, answers the box's 401
// with the line's secret (RFC 2617) and sends the INVITE again (CSeq 2)
// with the extra header lines; both carry body. It leaves the final
// response to the test.
func (u *rawUA) sendInviteAuth(user, exten, callID, extra, body string) {
	u.t.Helper()
	u.send(inviteText(u.box.String(), u.port(), user, exten, 1, callID, ""), body)
	r := u.final(5 * time.Second)
	if r == nil || r.StatusCode != 401 {
		u.t.Fatalf("INVITE: want 401, got %v", r)
	}
	if extra != "" {
		extra = "\n" + extra
	}
	u.send(inviteText(u.box.String(), u.port(), user, exten, 2, callID,
		authz(r, user, secret, "INVITE", "sip:"+exten+"@"+u.box.String()))+extra, body)
}

// inviteAuth is sendInviteAuth with our SDP; it returns the final response.
func (u *rawUA) inviteAuth(user, exten, callID string) *sip.Response {
	u.t.Helper()
	u.sendInviteAuth(user, exten, callID, "", testSDP)
	return u.final(5 * time.Second)
}

// sipReq is a request a test writes by hand, line by line: the request
// line, the Vias and the headers every request carries (RFC 3261
// §8.1.1), then more lines in order. send and wire add Content-Length.
type sipReq struct {
	method      sip.RequestMethod
	uri         string
	via         string   // the top Via's sent-by, host:port
	branch      string   // the top Via's branch; a new one if empty
	rport       bool     // the top Via asks for rport (RFC 3581)
	vias        []string // whole Via values below the top one
	from, to    string
	callID      string
	cseq        int
	maxForwards string   // 70 if empty
	hdrs        []string // more header lines
}

func (r sipReq) String() string {
	var b strings.Builder
	br := r.branch
	if br == "" {
		br = branch()
	}
	fmt.Fprintf(&b, "%s %s SIP/2.0\nVia: SIP/2.0/UDP %s;branch=%s", r.method, r.uri, r.via, br)
	if r.rport {
		b.WriteString(";rport")
	}
	for _, v := range r.vias {
		b.WriteString("\nVia: " + v)
	}
	mf := r.maxForwards
	if mf == "" {
		mf = "70"
	}
	fmt.Fprintf(&b, "\nFrom: %s\nTo: %s\nCall-ID: %s\nCSeq: %d %s\nMax-Forwards: %s", r.from, r.to, r.callID, r.cseq, r.method, mf)
	for _, h := range r.hdrs {
		b.WriteString("\n" + h)
	}
	return b.String()
}

func headerNames(m *sip.Response) []string {
	var out []string
	for _, h := range m.Headers() {
		out = append(out, h.Name())
	}
	return out
}
