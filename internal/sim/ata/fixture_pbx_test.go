package ata_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/phone"
	"github.com/isp-box/isp-box/internal/testutil"
)

// fixturePBX is a TEST FIXTURE, not the box's PBX (package pbx is that): a
// registrar that checks digest answers (401 then 200) and a UAS that
// challenges INVITEs with 407 and then answers by the number dialled:
// "busy" → 486, "slow" → 480, "nowhere" → 404, anything else → 180 then
// 200 with SDP pointing at an RTP echo socket. It lets the outgoing path of
// a registered line be tested without the real PBX.
type fixturePBX struct {
	t    *testing.T
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	dua  sipgo.DialogUA
	addr netip.AddrPort
	echo [2]*net.UDPConn // RTP echoes: the second is where a re-INVITE moves media

	mu      sync.Mutex
	dialogs map[string]*sipgo.DialogServerSession
	// answered is closed, per Call-ID, when onInvite is done with the
	// dialog: the test's own use of a dialog must wait for it, for sipgo's
	// DialogServerSession is not safe for use from two goroutines (a UDP
	// round trip is no happens-before edge for the race detector).
	answered map[string]chan struct{}
	bound    map[string]string // AOR user → Contact
	invites  chan *sip.Request // authenticated INVITEs
	byes     chan string       // Call-IDs of BYEs received
}

const fixtureRealm = "asterisk"

func newFixturePBX(t *testing.T) *fixturePBX {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixturePBX{t: t, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		dialogs: map[string]*sipgo.DialogServerSession{}, answered: map[string]chan struct{}{}, bound: map[string]string{},
		invites: make(chan *sip.Request, 8), byes: make(chan string, 8)}
	f.ua, _ = sipgo.NewUA(sipgo.WithUserAgent("fixture"))
	f.srv, _ = sipgo.NewServer(f.ua)
	cli, _ := sipgo.NewClient(f.ua, sipgo.WithClientConnectionAddr(f.addr.String()))
	f.dua = sipgo.DialogUA{Client: cli, ContactHDR: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(f.addr.Port())}}}
	for i := range f.echo {
		f.echo[i] = startEcho(t)
	}
	f.srv.OnRegister(f.onRegister)
	f.srv.OnInvite(f.onInvite)
	f.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		if ds := f.dialog(req); ds != nil {
			_ = ds.ReadAck(req, tx)
		}
	})
	f.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if ds := f.dialog(req); ds != nil {
			_ = ds.ReadBye(req, tx)
			f.byes <- req.CallID().Value()
		}
	})
	go f.srv.ServeUDP(conn)
	t.Cleanup(func() { f.ua.Close(); conn.Close() })
	return f
}

// startEcho sends every datagram back to where it came from.
func startEcho(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return c
}

func (f *fixturePBX) dialog(req *sip.Request) *sipgo.DialogServerSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dialogs[req.CallID().Value()]
}

// answeredDialog is inv's dialog once onInvite has answered it.
func (f *fixturePBX) answeredDialog(inv *sip.Request) *sipgo.DialogServerSession {
	f.mu.Lock()
	done := f.answered[inv.CallID().Value()]
	f.mu.Unlock()
	<-done
	return f.dialog(inv)
}

// checkDigest verifies an Authorization/Proxy-Authorization value against
// the fixture's realm and nonce (RFC 2617 §3.2.2.1, no qop).
func (f *fixturePBX) checkDigest(hdr sip.Header, method, nonce string) bool {
	if hdr == nil {
		return false
	}
	p := map[string]string{}
	for _, m := range digestParam.FindAllStringSubmatch(strings.TrimPrefix(hdr.Value(), "Digest "), -1) {
		p[m[1]] = m[2] + m[3]
	}
	if p["realm"] != fixtureRealm || p["nonce"] != nonce {
		return false
	}
	ha1 := md5hex(p["username"] + ":" + fixtureRealm + ":password")
	ha2 := md5hex(method + ":" + p["uri"])
	return p["response"] == md5hex(ha1+":"+nonce+":"+ha2)
}

// challenge answers req with a digest challenge (RFC 3261 §22.1: 401 and
// WWW-Authenticate from a registrar, 407 and Proxy-Authenticate from a
// proxy) for nonce in the fixture's realm.
func challenge(req *sip.Request, tx sip.ServerTransaction, code int, reason, header, nonce string) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sip.NewHeader(header, fmt.Sprintf(`Digest realm="%s", nonce="%s", algorithm=MD5`, fixtureRealm, nonce)))
	_ = tx.Respond(res)
}

func (f *fixturePBX) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	nonce := "reg-" + req.CallID().Value()
	if !f.checkDigest(req.GetHeader("Authorization"), "REGISTER", nonce) {
		challenge(req, tx, 401, "Unauthorized", "WWW-Authenticate", nonce)
		return
	}
	ct := req.Contact()
	f.mu.Lock()
	if v, _ := ct.Params.Get("expires"); v == "0" {
		delete(f.bound, req.From().Address.User)
	} else {
		f.bound[req.From().Address.User] = ct.Address.String()
	}
	f.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Contact", "<"+ct.Address.String()+">;expires=60"))
	_ = tx.Respond(res)
}

func (f *fixturePBX) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	nonce := "inv-" + req.CallID().Value()
	if !f.checkDigest(req.GetHeader("Proxy-Authorization"), "INVITE", nonce) {
		challenge(req, tx, 407, "Proxy Authentication Required", "Proxy-Authenticate", nonce)
		<-tx.Done() // until the ACK (or timer) ends the transaction
		return
	}
	done := make(chan struct{})
	defer close(done)
	f.mu.Lock()
	f.answered[req.CallID().Value()] = done
	f.mu.Unlock()
	f.invites <- req
	ds, err := f.dua.ReadInvite(req, tx)
	if err != nil {
		f.t.Errorf("fixture ReadInvite: %v", err)
		return
	}
	f.mu.Lock()
	f.dialogs[req.CallID().Value()] = ds
	f.mu.Unlock()
	switch req.Recipient.User {
	case "busy":
		_ = ds.Respond(486, "Busy Here", nil)
		return
	case "slow":
		_ = ds.Respond(480, "Temporarily Unavailable", nil)
		return
	case "nowhere":
		_ = ds.Respond(404, "Not Found", nil)
		return
	}
	pt := 97
	if req.Recipient.User == "pcmu" { // a far end without CLEARMODE
		pt = 0
	}
	_ = ds.Respond(180, "Ringing", nil)
	// sipgo runs each request in its own goroutine: a BYE sent right after
	// the ACK can be handled first and end the dialog, which is no error.
	// The late ACK then moves the state back to Confirmed, so ask whether
	// the dialog ever ended (its context is cancelled then, for good)
	// rather than what its state is now.
	if err := ds.RespondSDP(f.sdp(0, pt)); err != nil && ds.Context().Err() == nil {
		f.t.Errorf("fixture 200: %v", err)
	}
}

func (f *fixturePBX) sdp(echo int, pt int) []byte {
	port := f.echo[echo].LocalAddr().(*net.UDPAddr).Port
	return fmt.Appendf(nil, "v=0\r\no=- 1 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP %d\r\na=ptime:20\r\n", echo+1, port, pt)
}

// TestThroughRegistrar: a registered line dials a number through the
// (fixture) registrar: Request-URI user is the number, 407 is answered with
// a correct digest, the carrier runs over RTP to the SDP's address, a
// re-INVITE moves the media, and SIP failures map to the modem's errors.
func TestThroughRegistrar(t *testing.T) {
	f := newFixturePBX(t)
	a := startATA(t, ata.Options{Lines: []ata.LineConfig{
		{Name: "client", User: "pap2t-client", Password: "password", Registrar: f.addr},
	}})
	l := a.Line(0)
	testutil.Until(t, 10*time.Second, "registered", l.Registered)
	if li := a.Describe()[0]; li.Expires != 60*time.Second {
		t.Errorf("granted expires %v, want 60s", li.Expires)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	k, err := l.Dial(ctx, "88567682")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	inv := <-f.invites
	if inv.Recipient.User != "88567682" || inv.Recipient.Host != "127.0.0.1" || inv.From().Address.User != "pap2t-client" {
		t.Errorf("INVITE %s from %s", inv.Recipient.String(), inv.From().Address.String())
	}
	if ua := inv.GetHeader("User-Agent"); ua == nil || ua.Value() != ata.DefaultUserAgent {
		t.Errorf("INVITE User-Agent %v", ua)
	}
	if li := a.Describe()[0]; li.Payload != "CLEARMODE" || li.RemoteRTP != f.echo[0].LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("media: %s to %v", li.Payload, li.RemoteRTP)
	}
	echoed := func(msg string) {
		t.Helper()
		if _, err := k.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(k, got); err != nil || string(got) != msg {
			t.Fatalf("echo: %q, %v", got, err)
		}
	}
	echoed("ATDT88567682 via echo 1")

	// re-INVITE from the far side moving the media to the second echo.
	ds := f.answeredDialog(inv)
	re := sip.NewRequest(sip.INVITE, inv.Contact().Address)
	re.SetBody(f.sdp(1, 97))
	re.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res, err := ds.Do(ctx, re)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %v %v", res, err)
	}
	if !strings.Contains(string(res.Body()), "CLEARMODE") {
		t.Errorf("re-INVITE answer without our SDP:\n%s", res.Body())
	}
	ack := sip.NewRequest(sip.ACK, inv.Contact().Address)
	if err := ds.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	if li := a.Describe()[0]; li.RemoteRTP != f.echo[1].LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("after re-INVITE media goes to %v", li.RemoteRTP)
	}
	echoed("and now via echo 2")

	// The far side hangs up.
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("fixture BYE: %v", err)
	}
	if _, err := k.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("Read after BYE = %v, want io.EOF", err)
	}
	k.Close()

	for _, tc := range []struct {
		number string
		want   error
	}{
		{"busy", phone.ErrBusy},
		{"slow", phone.ErrNoAnswer},
		{"nowhere", phone.ErrNoCarrier},
	} {
		testutil.Until(t, 5*time.Second, "idle", func() bool { return a.Describe()[0].Call == ata.Idle })
		if _, err := l.Dial(ctx, tc.number); !errors.Is(err, tc.want) {
			t.Errorf("Dial(%q) = %v, want %v", tc.number, err, tc.want)
		}
		<-f.invites
	}

	// A far end that answers PCMU: the same bytes ride in PT 0.
	testutil.Until(t, 5*time.Second, "idle", func() bool { return a.Describe()[0].Call == ata.Idle })
	k, err = l.Dial(ctx, "pcmu")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	<-f.invites
	if li := a.Describe()[0]; li.Payload != "PCMU" {
		t.Errorf("payload %q, want PCMU", li.Payload)
	}
	echoed("raw bytes in PCMU")
	k.Close()
	<-f.byes

	// Our own hang-up reaches the far side as BYE.
	k, err = l.Dial(ctx, "88567682")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	inv = <-f.invites
	k.Close()
	select {
	case id := <-f.byes:
		if id != inv.CallID().Value() {
			t.Errorf("BYE for %s, want %s", id, inv.CallID().Value())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no BYE at the far side")
	}
}

func (f *fixturePBX) binding(user string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bound[user]
}

// TestRegistrationLifecycle: a wrong password leaves the line unregistered
// with the reason; a right one binds its Contact; stopping the ATA removes
// the binding (expires=0).
func TestRegistrationLifecycle(t *testing.T) {
	f := newFixturePBX(t)
	a, stop := runATA(t, ata.Options{Lines: []ata.LineConfig{
		{Name: "good", User: "pap2t-ispmodem", Password: "password", Registrar: f.addr},
		{Name: "bad", User: "pap2t-client", Password: "wrong", Registrar: f.addr, RetryInterval: time.Hour},
	}})
	testutil.Until(t, 10*time.Second, "registered", a.Line(0).Registered)
	testutil.Until(t, 10*time.Second, "registration failure", func() bool { return a.Describe()[1].RegError != "" })
	if li := a.Describe()[1]; li.Registered || !strings.Contains(li.RegError, "401") {
		t.Errorf("bad password: registered %v, error %q", li.Registered, li.RegError)
	}
	if got, want := f.binding("pap2t-ispmodem"), "sip:pap2t-ispmodem@"+a.Line(0).Addr().String(); got != want {
		t.Errorf("binding %q, want %q", got, want)
	}
	if _, err := a.Line(1).Dial(context.Background(), "88567682"); !errors.Is(err, phone.ErrNoDialtone) {
		t.Errorf("Dial on unregistered line = %v, want ErrNoDialtone", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := f.binding("pap2t-ispmodem"); got != "" {
		t.Errorf("binding after stop: %q, want none", got)
	}
}
