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

func (u *rawUA) sendRaw(b []byte) {
	u.t.Helper()
	if _, err := u.conn.WriteToUDPAddrPort(b, u.box); err != nil {
		u.t.Fatal(err)
	}
}

// send writes msg with CRLF line ends and a correct Content-Length.
func (u *rawUA) send(msg string, body string) {
	u.t.Helper()
	msg = strings.TrimLeft(msg, "\n")
	msg = strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n", "\r\n")
	msg += fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", len(body)) + body
	u.sendRaw([]byte(msg))
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
	hdr := ""
	if expires != "" {
		hdr += "Expires: " + expires + "\n"
	}
	if contact != "-" {
		hdr += "Contact: " + contact + "\n"
	}
	if auth != "" {
		hdr += "Authorization: " + auth + "\n"
	}
	u.send(fmt.Sprintf(`
REGISTER sip:%[1]s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%[2]d;branch=%[3]s;rport
From: <sip:%[4]s@%[1]s>;tag=reg%[2]d
To: <sip:%[4]s@%[1]s>
Call-ID: reg-%[4]s-%[2]d@127.0.0.1
CSeq: %[5]d REGISTER
Max-Forwards: 70
User-Agent: Linksys/PAP2T-5.1.6(LS)
Allow: ACK, BYE, CANCEL, INFO, INVITE, NOTIFY, OPTIONS, REFER
Supported: x-sipura, replaces
%[6]s`, u.box, u.port(), branch(), user, cseq, strings.TrimRight(hdr, "\n")), "")
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

func inviteText(box string, port int, user, exten string, cseq int, callID, auth string) string {
	a := ""
	if auth != "" {
		a = "\nAuthorization: " + auth
	}
	return fmt.Sprintf(`
INVITE sip:%[6]s@%[1]s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%[2]d;branch=%[3]s;rport
From: <sip:%[4]s@%[1]s>;tag=inv%[2]d
To: <sip:%[6]s@%[1]s>
Call-ID: %[7]s
CSeq: %[5]d INVITE
Contact: <sip:%[4]s@127.0.0.1:%[2]d>
Max-Forwards: 70
Content-Type: application/sdp%[8]s`, box, port, branch(), user, cseq, exten, callID, a)
}

// invite sends an INVITE as user to exten, with auth if given, and
// returns the final response.
func (u *rawUA) invite(user, exten string, cseq int, callID, auth string) *sip.Response {
	u.t.Helper()
	u.send(inviteText(u.box.String(), u.port(), user, exten, cseq, callID, auth), testSDP)
	return u.final(5 * time.Second)
}

func headerNames(m *sip.Response) []string {
	var out []string
	for _, h := range m.Headers() {
		out = append(out, h.Name())
	}
	return out
}
