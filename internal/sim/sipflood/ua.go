package sipflood

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// UA is one ATA line: it registers with digest auth, places a call and
// hangs it up, and answers calls, OPTIONS and BYE, over plain UDP with
// retransmissions as RFC 3261 §17.1 wants over an unreliable transport.
type UA struct {
	User, Password, Realm string

	c     *net.UDPConn
	box   netip.AddrPort
	p     *sip.Parser
	resp  chan *sip.Response
	done  chan struct{}
	calls int
}

// NewUA binds a line at bind (port 0 = any) for the server at box.
func NewUA(box netip.AddrPort, bind netip.Addr, user, password string) (*UA, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
	if err != nil {
		return nil, err
	}
	u := &UA{User: user, Password: password, Realm: "asterisk", c: c, box: box, p: sip.NewParser(),
		resp: make(chan *sip.Response, 64), done: make(chan struct{})}
	go u.read()
	return u, nil
}

// Close stops the line.
func (u *UA) Close() error {
	err := u.c.Close()
	<-u.done
	return err
}

func (u *UA) addr() netip.AddrPort { return u.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (u *UA) read() {
	defer close(u.done)
	buf := make([]byte, 65535)
	for {
		n, _, err := u.c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m, err := u.p.ParseSIP(buf[:n])
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case *sip.Response:
			select {
			case u.resp <- m:
			default:
			}
		case *sip.Request:
			u.serve(m)
		}
	}
}

// serve answers what the box sends this line: a call is answered at once.
func (u *UA) serve(req *sip.Request) {
	var res *sip.Response
	switch req.Method {
	case sip.INVITE:
		res = sip.NewResponseFromRequest(req, 200, "OK", []byte(floodSDP))
		res.AppendHeader(sip.NewHeader("Contact", fmt.Sprintf("<sip:%s@%s>", u.User, u.addr())))
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	case sip.ACK:
		return
	default:
		res = sip.NewResponseFromRequest(req, 200, "OK", nil)
	}
	u.send(res.String(), sourceOf(req, u.box))
}

func sourceOf(req *sip.Request, def netip.AddrPort) netip.AddrPort {
	v := req.Via()
	if v == nil {
		return def
	}
	if a, err := netip.ParseAddr(v.Host); err == nil && v.Port > 0 {
		if rp, ok := v.Params.Get("rport"); ok && rp != "" {
			var p int
			fmt.Sscanf(rp, "%d", &p)
			return netip.AddrPortFrom(a, uint16(p))
		}
		return netip.AddrPortFrom(a, uint16(v.Port))
	}
	return def
}

func (u *UA) send(msg string, to netip.AddrPort) {
	_, _ = u.c.WriteToUDPAddrPort([]byte(msg), to)
}

// transact sends msg (built fresh for each try by build) until a final
// response to cseq/method comes, retransmitting at T1 doubling.
func (u *UA) transact(ctx context.Context, callID string, cseq int, method string, msg string) (*sip.Response, error) {
	t := 500 * time.Millisecond
	deadline := time.Now().Add(32 * time.Second)
	u.send(msg, u.box)
	timer := time.NewTimer(t)
	defer timer.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case r := <-u.resp:
			if r.CallID() == nil || r.CallID().Value() != callID || r.CSeq() == nil || int(r.CSeq().SeqNo) != cseq ||
				string(r.CSeq().MethodName) != method || r.StatusCode < 200 {
				continue
			}
			return r, nil
		case <-timer.C:
			u.send(msg, u.box)
			t = min(2*t, 4*time.Second)
			timer.Reset(t)
		}
	}
	return nil, fmt.Errorf("%s: no final response in 32 s", method)
}

func (u *UA) authz(r *sip.Response, method, uri string) (string, error) {
	return authz(r, u.User, u.Realm, u.Password, method, uri)
}

func authz(r *sip.Response, user, realm, password, method, uri string) (string, error) {
	h := r.GetHeader("WWW-Authenticate")
	if h == nil {
		h = r.GetHeader("Proxy-Authenticate")
	}
	if h == nil {
		return "", errors.New("401 without a challenge")
	}
	m := nonceRE.FindStringSubmatch(h.Value())
	if m == nil {
		return "", errors.New("challenge without a nonce")
	}
	ha1 := md5hex(user + ":" + realm + ":" + password)
	resp := md5hex(ha1 + ":" + m[1] + ":" + md5hex(method+":"+uri))
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5`, user, realm, m[1], uri, resp), nil
}

// Register registers the line for expires seconds; nil on 200.
func (u *UA) Register(ctx context.Context, expires int) error {
	return u.RegisterAs(ctx, u.User, u.Password, expires)
}

// RegisterAs registers another line from this UA's socket (many lines of
// one gateway, or a registration load from few sockets); the UA answers
// the server's OPTIONS for all of them. One at a time per UA.
func (u *UA) RegisterAs(ctx context.Context, user, password string, expires int) error {
	callID := fmt.Sprintf("reg-%x@%s", rand.Uint64(), u.addr().Addr())
	uri := "sip:" + u.box.String()
	build := func(cseq int, auth string) string {
		if auth != "" {
			auth = "Authorization: " + auth + "\r\n"
		}
		return fmt.Sprintf("REGISTER %[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK%[3]x;rport\r\nFrom: <sip:%[4]s@%[5]s>;tag=r%[6]x\r\n"+
			"To: <sip:%[4]s@%[5]s>\r\nCall-ID: %[7]s\r\nCSeq: %[8]d REGISTER\r\nContact: <sip:%[4]s@%[2]s>\r\nMax-Forwards: 70\r\n"+
			"User-Agent: Linksys/PAP2T-5.1.6(LS)\r\nAllow: ACK, BYE, CANCEL, INFO, INVITE, NOTIFY, OPTIONS, REFER\r\nExpires: %[9]d\r\n%[10]sContent-Length: 0\r\n\r\n",
			uri, u.addr(), rand.Uint64(), user, u.box.Addr(), rand.Uint32(), callID, cseq, expires, auth)
	}
	r, err := u.transact(ctx, callID, 1, "REGISTER", build(1, ""))
	if err != nil {
		return err
	}
	if r.StatusCode == 401 {
		a, err := authz(r, user, u.Realm, password, "REGISTER", uri)
		if err != nil {
			return err
		}
		if r, err = u.transact(ctx, callID, 2, "REGISTER", build(2, a)); err != nil {
			return err
		}
	}
	if r.StatusCode != 200 {
		return fmt.Errorf("REGISTER: %d %s", r.StatusCode, r.Reason)
	}
	return nil
}

// Call calls exten, waits for the answer, holds the call for hold and
// hangs up; nil when every step got its 200.
func (u *UA) Call(ctx context.Context, exten string, hold time.Duration) error {
	u.calls++
	callID := fmt.Sprintf("call-%x@%s", rand.Uint64(), u.addr().Addr())
	tag := fmt.Sprintf("c%x", rand.Uint32())
	uri := fmt.Sprintf("sip:%s@%s", exten, u.box)
	var branch string
	build := func(cseq int, auth string) string {
		branch = fmt.Sprintf("z9hG4bK%x", rand.Uint64())
		if auth != "" {
			auth = "Authorization: " + auth + "\r\n"
		}
		return fmt.Sprintf("INVITE %[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=%[3]s;rport\r\nFrom: <sip:%[4]s@%[5]s>;tag=%[6]s\r\n"+
			"To: <%[1]s>\r\nCall-ID: %[7]s\r\nCSeq: %[8]d INVITE\r\nContact: <sip:%[4]s@%[2]s>\r\nMax-Forwards: 70\r\n"+
			"User-Agent: Linksys/PAP2T-5.1.6(LS)\r\nContent-Type: application/sdp\r\n%[9]sContent-Length: %[10]d\r\n\r\n%[11]s",
			uri, u.addr(), branch, u.User, u.box.Addr(), tag, callID, cseq, auth, len(floodSDP), floodSDP)
	}
	ackFor := func(r *sip.Response, cseq int, ruri string) string {
		return fmt.Sprintf("ACK %[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=%[3]s;rport\r\nFrom: <sip:%[4]s@%[5]s>;tag=%[6]s\r\n"+
			"To: %[7]s\r\nCall-ID: %[8]s\r\nCSeq: %[9]d ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			ruri, u.addr(), branch, u.User, u.box.Addr(), tag, r.To().Value(), callID, cseq)
	}
	r, err := u.transact(ctx, callID, 1, "INVITE", build(1, ""))
	if err != nil {
		return err
	}
	cseq := 1
	if r.StatusCode == 401 || r.StatusCode == 407 {
		u.send(ackFor(r, 1, uri), u.box) // RFC 3261 §17.1.1.3: same branch as the INVITE
		a, err := u.authz(r, "INVITE", uri)
		if err != nil {
			return err
		}
		cseq = 2
		if r, err = u.transact(ctx, callID, 2, "INVITE", build(2, a)); err != nil {
			return err
		}
	}
	if r.StatusCode != 200 {
		u.send(ackFor(r, cseq, uri), u.box)
		return fmt.Errorf("INVITE: %d %s", r.StatusCode, r.Reason)
	}
	target := uri
	if c := r.Contact(); c != nil {
		target = c.Address.String()
	}
	branch = fmt.Sprintf("z9hG4bK%x", rand.Uint64()) // the ACK of a 2xx is a transaction of its own (§13.2.2.4)
	u.send(ackFor(r, cseq, target), u.box)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(hold):
	}
	bye := fmt.Sprintf("BYE %[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK%[3]x;rport\r\nFrom: <sip:%[4]s@%[5]s>;tag=%[6]s\r\n"+
		"To: %[7]s\r\nCall-ID: %[8]s\r\nCSeq: %[9]d BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		target, u.addr(), rand.Uint64(), u.User, u.box.Addr(), tag, r.To().Value(), callID, cseq+1)
	r, err = u.transact(ctx, callID, cseq+1, "BYE", bye)
	if err != nil {
		return err
	}
	if r.StatusCode != 200 {
		return fmt.Errorf("BYE: %d %s", r.StatusCode, r.Reason)
	}
	return nil
}

// String names the line for messages.
func (u *UA) String() string { return strings.Join([]string{u.User, u.addr().String()}, "@") }
