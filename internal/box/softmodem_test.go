package box_test

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/softmodem"
	"github.com/isp-box/isp-box/softmodem/g711"
)

// TestPPPOverSoftmodem: a caller's V.22bis modem dials an extension whose
// dial plan is Modem(answer); the box answers with its own software modem
// on the RTP and serves PPP on it as on a hardware line; the project's
// PPP client authenticates (PAP, [users]) and gets an address.
func TestPPPOverSoftmodem(t *testing.T) {
	if testing.Short() {
		t.Skip("real time: a modem call and a PPP session, about 15 s")
	}
	r := newRig(t)
	text := mustReplace(t, r.configText(""), "exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)",
		"exten => 5550000,1,Modem(answer)\nexten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)")
	if err := os.WriteFile(r.cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	b := r.startBox()

	ua := newSIPCaller(t, netipLoopback(r.port))
	caller := softmodem.New(softmodem.Config{Modulation: softmodem.V22bis, Role: softmodem.Originate})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ua.call(ctx, "5550000", caller)

	deadline := time.Now().Add(20 * time.Second)
	for caller.State() != softmodem.StateData && time.Now().Before(deadline) {
		select {
		case <-caller.Changed():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if caller.State() != softmodem.StateData {
		t.Fatalf("no CONNECT: %+v", caller.Stats())
	}
	cl, err := ppp.Dial(ctx, caller, ppp.ClientConfig{User: "dial", Password: "dial"}, r.log("client"))
	if err != nil {
		t.Fatalf("PPP over the softmodem: %v (caller %+v)", err, caller.Stats())
	}
	defer cl.Close()
	if !cl.Local().IsValid() || cl.Local().IsUnspecified() {
		t.Errorf("client address %v", cl.Local())
	}
	t.Logf("PPP up over V.22bis %d bit/s: client %v, box %v", caller.Stats().Rate, cl.Local(), cl.Remote())
	// Ping the box's end of the link (RFC 792 echo) over the softmodem.
	if err := cl.WritePacket(pingPacket(cl.Local(), cl.Remote(), 7)); err != nil {
		t.Fatal(err)
	}
	reply := make(chan bool, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := cl.ReadPacket(buf)
			if err != nil {
				return
			}
			p := buf[:n]
			if n >= 28 && p[0] == 0x45 && p[9] == 1 && p[20] == 0 && binary.BigEndian.Uint16(p[24:]) == 7 {
				reply <- true
				return
			}
		}
	}()
	select {
	case <-reply:
		t.Logf("ping %v over the softmodem: reply", cl.Remote())
	case <-time.After(10 * time.Second):
		t.Errorf("no echo reply from %v", cl.Remote())
	}
	st := b.Status()
	if len(st.Sessions) != 1 || len(st.Calls) != 1 || st.Calls[0].To != "Modem/V.22bis/2400" {
		t.Errorf("status: calls %+v sessions %+v", st.Calls, st.Sessions)
	}
	var up bool
	for _, ev := range b.events.all() {
		if m, ok := ev.(bus.ModemStats); ok && m.Rate == 2400 {
			up = true
		}
	}
	if !up {
		t.Error("no modem.stats event at 2400 bit/s")
	}
}

// pingPacket is an IPv4 ICMP echo request with identifier id.
func pingPacket(src, dst netip.Addr, id uint16) []byte {
	p := make([]byte, 20+8+32)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 1
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:], s4[:])
	copy(p[16:], d4[:])
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:20], 0))
	icmp := p[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, 0))
	return p
}

// sipCaller places one call with digest authentication, as pap2t-client,
// and runs the caller's modem on the RTP in lock step with the box's
// packets.
type sipCaller struct {
	t    *testing.T
	conn *net.UDPConn
	box  netip.AddrPort
	p    *sip.Parser
}

func newSIPCaller(t *testing.T, box netip.AddrPort) *sipCaller {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sipCaller{t: t, conn: c, box: box, p: sip.NewParser()}
}

func (u *sipCaller) port() int { return u.conn.LocalAddr().(*net.UDPAddr).Port }

func (u *sipCaller) send(msg, body string) {
	msg = strings.ReplaceAll(strings.Trim(msg, "\n"), "\n", "\r\n")
	msg += fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := u.conn.WriteToUDPAddrPort([]byte(msg), u.box); err != nil {
		u.t.Fatal(err)
	}
}

func (u *sipCaller) final() *sip.Response {
	buf := make([]byte, 65535)
	end := time.Now().Add(10 * time.Second)
	for time.Now().Before(end) {
		u.conn.SetReadDeadline(end)
		n, err := u.conn.Read(buf)
		if err != nil {
			return nil
		}
		m, err := u.p.ParseSIP(buf[:n])
		if err != nil {
			continue
		}
		if r, ok := m.(*sip.Response); ok && r.StatusCode >= 200 {
			return r
		}
	}
	return nil
}

var nonceRE = regexp.MustCompile(`nonce="([^"]+)"`)

func md5hex(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

func (u *sipCaller) request(method, exten string, cseq int, callID, toTag, extra, body string) {
	to := ""
	if toTag != "" {
		to = ";tag=" + toTag
	}
	u.send(fmt.Sprintf(`
%[8]s sip:%[1]s@%[2]s SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:%[3]d;branch=z9hG4bK%[4]d%[5]d;rport
From: <sip:pap2t-client@%[2]s>;tag=caller
To: <sip:%[1]s@%[2]s>%[6]s
Call-ID: %[7]s
CSeq: %[5]d %[8]s
Contact: <sip:pap2t-client@127.0.0.1:%[3]d>
Max-Forwards: 70
User-Agent: Linksys/PAP2T-5.1.6(LS)%[9]s`, exten, u.box, u.port(), time.Now().UnixNano(), cseq, to, callID, method, extra), body)
}

// call INVITEs exten and starts the modem on the answered call's RTP.
func (u *sipCaller) call(ctx context.Context, exten string, m *softmodem.Modem) {
	t := u.t
	media, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
		media.LocalAddr().(*net.UDPAddr).Port)
	const callID = "softmodem-ppp@127.0.0.1"
	ctype := "\nContent-Type: application/sdp"
	u.request("INVITE", exten, 1, callID, "", ctype, offer)
	r := u.final()
	if r != nil && r.StatusCode == 401 {
		tag, _ := r.To().Params.Get("tag")
		u.request("ACK", exten, 1, callID, tag, "", "")
		nonce := nonceRE.FindStringSubmatch(r.GetHeader("WWW-Authenticate").Value())[1]
		uri := "sip:" + exten + "@" + u.box.String()
		resp := md5hex(md5hex("pap2t-client:asterisk:password") + ":" + nonce + ":" + md5hex("INVITE:"+uri))
		auth := fmt.Sprintf("\nAuthorization: Digest username=\"pap2t-client\", realm=\"asterisk\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=MD5", nonce, uri, resp)
		u.request("INVITE", exten, 2, callID, "", ctype+auth, offer)
		r = u.final()
	}
	if r == nil || r.StatusCode != 200 {
		t.Fatalf("INVITE %s: %v", exten, r)
	}
	tag, _ := r.To().Params.Get("tag")
	u.request("ACK", exten, 2, callID, tag, "", "")
	var remote netip.AddrPort
	for _, l := range strings.Split(string(r.Body()), "\r\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "m=audio" {
			var port int
			fmt.Sscan(f[1], &port)
			remote = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		}
	}
	go func() {
		buf, pkt := make([]byte, 1500), make([]byte, 1500)
		h := rtp.Header{Version: 2, PayloadType: 0, SSRC: 4321}
		var p rtp.Packet
		for ctx.Err() == nil {
			media.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := media.Read(buf)
			if err != nil || p.Unmarshal(buf[:n]) != nil {
				continue
			}
			rx, tx := make([]int16, len(p.Payload)), make([]int16, len(p.Payload))
			g711.Ulaw.Decode(rx, p.Payload)
			m.Process(rx, tx)
			hl, _ := h.MarshalTo(pkt)
			g711.Ulaw.Encode(pkt[hl:], tx)
			media.WriteToUDPAddrPort(pkt[:hl+len(tx)], remote)
			h.SequenceNumber++
			h.Timestamp += uint32(len(tx))
		}
	}()
}
