package box_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/sim/smcaller"
	"github.com/isp-box/isp-box/modem/telnet/telnettest"
	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/softmodem"
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
	t.Cleanup(func() {
		if t.Failed() { // what the box's modem saw
			for _, ev := range b.events.all() {
				if m, ok := ev.(bus.ModemStats); ok {
					t.Logf("%v", m)
				}
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	call, err := smcaller.Dial(ctx, smcaller.Options{Box: netipLoopback(r.port), User: "pap2t-client", Password: "password",
		Number: "5550000", Modulation: softmodem.V22bis})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	caller := call.Modem
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	err = call.WaitConnect(cctx)
	ccancel()
	if err != nil {
		t.Fatalf("%v: %+v", err, caller.Stats())
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

// dialSoftmodem writes the box's config with extra dial plan lines before
// the catch-all, starts it and dials number with a V.22bis caller until
// CONNECT.
func dialSoftmodem(t *testing.T, plan, number string) (*rig, *running, *smcaller.Call) {
	t.Helper()
	r := newRig(t)
	text := mustReplace(t, r.configText(""), "exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)",
		plan+"\nexten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)")
	if err := os.WriteFile(r.cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	b := r.startBox()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := smcaller.Dial(ctx, smcaller.Options{Box: netipLoopback(r.port), User: "pap2t-client", Password: "password",
		Number: number, Modulation: softmodem.V22bis})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { call.Close() })
	if err := call.WaitConnect(ctx); err != nil {
		t.Fatalf("%v: %+v", err, call.Modem.Stats())
	}
	return r, b, call
}

// expectModem reads what the caller's modem receives until want (or
// fails after d), and returns all of it.
func expectModem(t *testing.T, m *softmodem.Modem, want string, d time.Duration) string {
	t.Helper()
	var got []byte
	deadline := time.After(d)
	for !bytes.Contains(got, []byte(want)) {
		select {
		case <-m.Changed():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("waited %s for %q; got %q (%+v)", d, want, got, m.Stats())
		}
		got = append(got, m.TakeReceived()...)
	}
	return string(got)
}

// TestLoginOverSoftmodem: the number's dial plan says Login() before
// Modem(answer): the box's own modem answers and the caller gets the text
// login of a hardware line, not AutoPPP; after it, PPP runs for the
// logged-in user. The call is a line of its own in `lines`, with its
// modem's figures there and in `calls`.
func TestLoginOverSoftmodem(t *testing.T) {
	if testing.Short() {
		t.Skip("real time: a modem call, about 12 s")
	}
	_, b, call := dialSoftmodem(t, "exten => 5550002,1,Login()\nsame => n,Modem(answer)", "5550002")
	m := call.Modem
	// Without error correction a hole in the audio may garble a
	// character of what we type: the login allows three tries.
	for try := 0; ; try++ {
		expectModem(t, m, "login: ", 15*time.Second)
		m.Write([]byte("dial\r"))
		expectModem(t, m, "Password: ", 10*time.Second)
		m.Write([]byte("dial\r"))
		// The box starts PPP for the user: its LCP frames begin with 7E.
		out := expectModem(t, m, "~", 10*time.Second)
		if !strings.Contains(out, "Login incorrect") {
			break
		}
		if try == 2 {
			t.Fatal("login refused three times")
		}
	}
	lines := b.Status().Lines
	line := lines[0]
	for _, l := range lines {
		if strings.HasPrefix(l.Name, "softmodem/") {
			line = l
		}
	}
	if line.State != "connected" || line.Caps != "softmodem" || !strings.Contains(line.LastConnect, "2400/V.22bis") {
		t.Errorf("softmodem line: %+v", line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := ppp.Dial(ctx, m, ppp.ClientConfig{User: "dial", Password: "dial"}, nil)
	if err != nil {
		t.Fatalf("PPP after the login: %v", err)
	}
	defer cl.Close()
	st := b.Status()
	if len(st.Sessions) != 1 || st.Sessions[0].User != "dial" || st.Sessions[0].Line != line.Name {
		t.Fatalf("sessions %+v", st.Sessions)
	}
	// The modem's figures, in calls, lines and sessions.
	for what, m := range map[string]*bus.ModemStats{"call": st.Calls[0].Modem, "line": line.Modem, "session": st.Sessions[0].Modem} {
		if m == nil || m.Modulation != "V.22bis" || m.Rate != 2400 || m.State != "data" || m.SNR < 15 || m.BytesIn == 0 || m.BytesOut == 0 {
			t.Errorf("%s's modem figures: %+v", what, m)
		}
	}
}

// TestBBSOverSoftmodem: the number's dial plan says Telnet(BBS) before
// Modem(answer): the box's modem answers and the call is spliced to the
// Telnet server the test runs, as on a hardware line (issue 12's
// services): text both ways.
func TestBBSOverSoftmodem(t *testing.T) {
	if testing.Short() {
		t.Skip("real time: a modem call, about 12 s")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := telnettest.BBS{
		Greeting: "Welcome to the BBS\r\nName? ",
		Until:    telnettest.Contains([]byte("\r")),
		Reply:    func(read []byte) string { return "Hello, " + string(bytes.TrimSpace(read)) + "\r\n" },
		Linger:   2 * time.Second, // the greeting leaves before the hang-up
	}.Serve(ln)
	_, _, call := dialSoftmodem(t, "exten => 5552323,1,Telnet("+ln.Addr().String()+")\nsame => n,Modem(answer)", "5552323")
	expectModem(t, call.Modem, "Welcome to the BBS\r\nName? ", 15*time.Second)
	call.Modem.Write([]byte("sysop\r"))
	expectModem(t, call.Modem, "Hello, sysop\r\n", 15*time.Second)
	if s := string(<-got); s != "sysop\r" {
		t.Errorf("the BBS got %q", s)
	}
}
