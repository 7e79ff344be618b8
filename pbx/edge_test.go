package pbx

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
)

// newRawUAAt is newRawUA bound to a given loopback address: every
// 127.0.0.0/8 address is ours on Linux, so a test can be many hosts.
func newRawUAAt(t *testing.T, box netip.AddrPort, ip string) *rawUA {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawUA{t: t, conn: c, box: box, p: sip.NewParser()}
}

// drain returns every datagram that arrives within d: its count and bytes.
func (u *rawUA) drain(d time.Duration) (n, bytes int) {
	buf := make([]byte, 65535)
	deadline := time.Now().Add(d)
	for {
		_ = u.conn.SetReadDeadline(deadline)
		k, _, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			return n, bytes
		}
		n++
		bytes += k
	}
}

// optionsText is an OPTIONS as sipp's and most ATAs' keep-alive sends it.
func optionsText(box string, port int, callID string) string {
	probe := fmt.Sprintf("<sip:probe@127.0.0.1:%d>", port)
	return sipReq{method: sip.OPTIONS, uri: "sip:" + box, via: fmt.Sprintf("127.0.0.1:%d", port), rport: true,
		from: fmt.Sprintf("%s;tag=o%d", probe, port), to: "<sip:" + box + ">", callID: callID, cseq: 1,
		hdrs: []string{"Contact: " + probe, "Accept: application/sdp"}}.String()
}

func wire(msg, body string) []byte {
	msg = strings.TrimLeft(msg, "\n")
	msg = strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n", "\r\n")
	return []byte(msg + fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", len(body)) + body)
}

// Every answer to an unknown source is one datagram, sent once, no larger
// than the request: a forged source gets no amplifier (a 401 to an INVITE
// used to be retransmitted 11 times over 32 s, 31x the request).
func TestStatelessAmplification(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := newRawUAAt(t, box.Addr(), "127.0.3.1")
	reg := func(user string) []byte {
		aor := "<sip:" + user + "@" + box.Addr().String() + ">"
		return wire(sipReq{method: sip.REGISTER, uri: "sip:" + box.Addr().String(), via: u.addr(), rport: true,
			from: fmt.Sprintf("%s;tag=reg%d", aor, u.port()), to: aor, callID: fmt.Sprintf("reg-%s-%d@127.0.3.1", user, u.port()), cseq: 1,
			hdrs: []string{"Contact: <sip:" + user + "@" + u.addr() + ">", "User-Agent: Linksys/PAP2T-5.1.6(LS)", "Expires: 3600"}}.String(), "")
	}
	cases := []struct {
		name string
		req  []byte
		code int
	}{
		{"INVITE", wire(inviteText(box.Addr().String(), u.port(), clientLine, "88567682", 1, "amp-inv@127.0.3.1", ""), testSDP), 401},
		{"INVITE unknown user", wire(inviteText(box.Addr().String(), u.port(), "nosuch", "88567682", 1, "amp-inv2@127.0.3.1", ""), testSDP), 401},
		{"REGISTER", reg(clientLine), 401},
		{"OPTIONS", wire(optionsText(box.Addr().String(), u.port(), "amp-opt@127.0.3.1"), ""), 200},
		{"BYE without dialog", wire(sipReq{method: sip.BYE, uri: "sip:x@" + box.Addr().String(), via: u.addr(), rport: true,
			from: "<sip:a@127.0.3.1>;tag=a1", to: "<sip:b@" + box.Addr().String() + ">;tag=nosuchdialog",
			callID: "amp-bye@127.0.3.1", cseq: 2}.String(), ""), 481},
	}
	for _, c := range cases {
		u.sendRaw(c.req)
		m := u.recv(2 * time.Second)
		r, ok := m.(*sip.Response)
		if !ok || r.StatusCode != c.code {
			t.Errorf("%s: want %d, got %v", c.name, c.code, m)
			continue
		}
		out := len(r.String()) // parsed form: at least as long as the wire form minus compact names
		// what else comes: a stateful 401 to an INVITE is retransmitted from 500 ms on (RFC 3261 §17.2.1)
		n, more := u.drain(2500 * time.Millisecond)
		if n != 0 {
			t.Errorf("%s: %d more datagrams (%d bytes) after the answer: retransmitted", c.name, n, more)
		}
		_ = out
	}
	st := box.EdgeStats()
	if st.Stateless != uint64(len(cases)) {
		t.Errorf("%d stateless answers, want %d (%+v)", st.Stateless, len(cases), st)
	}
	if st.StatelessBytesOut > st.StatelessBytesIn {
		t.Errorf("amplification %.2f: %d bytes out for %d in", float64(st.StatelessBytesOut)/float64(st.StatelessBytesIn), st.StatelessBytesOut, st.StatelessBytesIn)
	}
	t.Logf("stateless: %d answers, %d bytes in, %d out: %.2fx", st.Stateless, st.StatelessBytesIn, st.StatelessBytesOut,
		float64(st.StatelessBytesOut)/float64(st.StatelessBytesIn))
}

// Each unauthenticated answer alone is no larger than its request, byte
// for byte on the wire.
func TestStatelessAnswerNoLargerThanRequest(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := newRawUAAt(t, box.Addr(), "127.0.3.2")
	for _, req := range [][]byte{
		wire(inviteText(box.Addr().String(), u.port(), clientLine, "1", 1, "a@b", ""), testSDP),
		wire(optionsText(box.Addr().String(), u.port(), "o@b"), ""),
	} {
		u.sendRaw(req)
		buf := make([]byte, 65535)
		_ = u.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no answer to\n%s", req)
		}
		if n > len(req) {
			t.Errorf("%d-byte answer to a %d-byte request:\n%s", n, len(req), buf[:n])
		}
		t.Logf("%s: %d bytes in, %d out (%.2fx)", strings.Fields(string(req))[0], len(req), n, float64(n)/float64(len(req)))
	}
	// a request too small to carry its challenge is not answered at all
	tiny := wire(fmt.Sprintf("REGISTER sip:%[1]s SIP/2.0\nVia: SIP/2.0/UDP 127.0.3.2:%[2]d;branch=z9hG4bKt\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: t\nCSeq: 1 REGISTER",
		box.Addr(), u.port()), "")
	u.sendRaw(tiny)
	if n, b := u.drain(time.Second); n != 0 {
		t.Errorf("a %d-byte REGISTER got %d bytes back", len(tiny), b)
	}
}

// Failures from one address:port never lock out a peer registered from
// another: a guesser behind the ATA's NAT (same address, its own port)
// gets the address banned, and the ATA's registration and calls go on.
// A nonce fetched from one address is worth nothing from another.
func TestBanSparesRegisteredPeer(t *testing.T) {
	cfg := testConfig("")
	cfg.General.MaxAuthFailures = 3
	box := startBox(t, cfg, nil)
	ata := registeredUA(t, box.Addr(), clientLine, "3600") // 127.0.0.1
	// a nonce from 127.0.4.1 used from 127.0.4.2: a challenge, not a failure
	other := newRawUAAt(t, box.Addr(), "127.0.4.1")
	r := other.register(clientLine, 1, "", "", "")
	forger := newRawUAAt(t, box.Addr(), "127.0.4.2")
	r = forger.register(clientLine, 2, "", "", authz(r, clientLine, "wrong", "REGISTER", "sip:"+box.Addr().String()))
	if r == nil || r.StatusCode != 401 {
		t.Fatalf("a nonce used away from where it was sent: want 401, got %v", r)
	}
	if n := box.EdgeStats().AuthFailures; n != 0 {
		t.Fatalf("%d failures counted for a nonce from elsewhere", n)
	}
	// the guesser next to the ATA
	g := newRawUA(t, box.Addr())
	for i := 0; i < 3; i++ {
		r := g.register(clientLine, 2*i+1, "", "", "")
		r = g.register(clientLine, 2*i+2, "", "", authz(r, clientLine, "wrong", "REGISTER", "sip:"+box.Addr().String()))
		if r == nil || r.StatusCode != 403 {
			t.Fatalf("guess %d: %v", i, r)
		}
	}
	box.ev.wait(t, 2*time.Second, func(e bus.Event) bool { b, ok := e.(bus.SourceBanned); return ok && b.Addr.String() == "127.0.0.1" })
	if r := g.register(clientLine, 9, "", "", ""); r != nil {
		t.Errorf("the banned guesser still gets answers: %v", r)
	}
	time.Sleep(2 * trustRefresh)
	// the ATA, from its registered address:port, is not banned
	if r := ata.registerAuth(clientLine, secret, "3600"); r.StatusCode != 200 {
		t.Errorf("ATA re-REGISTER after the ban: %d", r.StatusCode)
	}
	ata.send(optionsText(box.Addr().String(), ata.port(), "ata-opt@127.0.0.1"), "")
	if r := ata.final(2 * time.Second); r == nil || r.StatusCode != 200 {
		t.Errorf("ATA OPTIONS after the ban: %v", r)
	}
	if _, ok := box.Bans()[netip.MustParseAddr("127.0.0.1")]; !ok {
		t.Error("ban not listed")
	}
	if !box.Unban(netip.MustParseAddr("127.0.0.1")) || len(box.Bans()) != 0 {
		t.Error("unban")
	}
	if r := g.register(clientLine, 10, "", "", ""); r == nil || r.StatusCode != 401 {
		t.Errorf("after unban: %v", r)
	}
}

// A guesser with many addresses gets a few guesses a second at one name,
// never more; the real device, from where it is registered, is never
// slowed down.
func TestGuessesPerNameThrottled(t *testing.T) {
	cfg := testConfig("")
	cfg.General.GuessRate = 2
	cfg.General.MaxAuthFailures = 1000
	box := startBox(t, cfg, nil)
	ata := registeredUA(t, box.Addr(), clientLine, "3600")
	start := time.Now()
	const guesses = 60
	refused := 0
	for i := range guesses {
		u := newRawUAAt(t, box.Addr(), fmt.Sprintf("127.0.5.%d", 1+i))
		r := u.register(clientLine, 1, "", "", "")
		if r == nil || r.StatusCode != 401 {
			t.Fatalf("guesser %d: challenge %v", i, r)
		}
		r = u.register(clientLine, 2, "", "", authz(r, clientLine, "wrong", "REGISTER", "sip:"+box.Addr().String()))
		switch {
		case r != nil && r.StatusCode == 403:
			refused++
		case r != nil && r.StatusCode == 401:
		default:
			t.Fatalf("guess %d: %v", i, r)
		}
	}
	took := time.Since(start)
	if limit := guessBurst + int(took.Seconds()*2) + 1; refused > limit {
		t.Errorf("%d guesses evaluated in %v from %d addresses, want at most %d", refused, took, guesses, limit)
	}
	t.Logf("%d of %d guesses evaluated in %v (%.1f/s)", refused, guesses, took, float64(refused)/took.Seconds())
	// meanwhile the ATA registers at once, every time
	for i := range 3 {
		if r := ata.registerAuth(clientLine, secret, "3600"); r.StatusCode != 200 {
			t.Errorf("ATA REGISTER %d during the guessing: %d", i, r.StatusCode)
		}
	}
}

// sipgo keeps about 100 bytes for good per source address:port it has
// read from; the entry hands it only what needs a transaction and
// restarts its read loop every feedSources sources, so the state per
// source is bounded however many sources come.
func TestPerSourceStateBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 sources")
	}
	cfg := testConfig("")
	cfg.General.SourceRate = -1 // this is about state: every source gets through
	box := startBox(t, cfg, nil)
	pool := box.ua.TransportLayer().Pool("udp")
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	const sources = 20000
	dst := net.UDPAddrFromAddrPort(box.Addr())
	for i := range sources {
		ip := net.IPv4(127, 6+byte(i>>16), byte(i>>8), byte(i))
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		// a stray response (goes to sipgo) and an OPTIONS (answered here)
		res := wire(fmt.Sprintf("SIP/2.0 200 OK\nVia: SIP/2.0/UDP %[1]s;branch=z9hG4bKstray%[2]d\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: stray-%[2]d\nCSeq: 1 OPTIONS", box.Addr(), i), "")
		if _, err := c.WriteToUDP(res, dst); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteToUDP(wire(optionsText(box.Addr().String(), port, fmt.Sprintf("src-%d", i)), ""), dst); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if i%500 == 0 {
			time.Sleep(5 * time.Millisecond) // let the box keep up: this is about state, not loss
		}
	}
	time.Sleep(time.Second)
	after := heap()
	grew := int64(after) - int64(before)
	t.Logf("%d sources: sipgo pool %d entries, live heap %+d bytes (%.1f bytes/source), stats %+v",
		sources, pool.Size(), grew, float64(grew)/sources, box.EdgeStats())
	if n := pool.Size(); n > feedSources+8 {
		t.Errorf("sipgo's pool holds %d entries after %d sources, want at most %d", n, sources, feedSources+8)
	}
	if grew > 2<<20 {
		t.Errorf("live heap grew %d bytes for %d sources", grew, sources)
	}
}

// An INVITE whose forwarded copy is over 1,300 bytes goes out over UDP
// (the ATA has no TCP) instead of failing with 503.
func TestLargeInviteForwardedOverUDP(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	callee := registeredUA(t, box.Addr(), ispLine, "3600")
	caller := newRawUA(t, box.Addr())
	sdp := testSDP
	for i := 0; len(sdp) < 1100; i++ {
		sdp += fmt.Sprintf("a=x-padding-%d:%s\r\n", i, strings.Repeat("z", 40))
	}
	callID := "big@127.0.0.1"
	caller.sendInviteAuth(clientLine, "88567682", callID, "", sdp)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := callee.recv(time.Until(deadline))
		if req, ok := m.(*sip.Request); ok && req.Method == sip.INVITE {
			if n := len(req.String()); n <= 1300 {
				t.Errorf("forwarded INVITE is %d bytes; the test wants > 1300", n)
			}
			return
		}
	}
	t.Fatal("the callee never got the INVITE")
}

// A brute force does not become a log flood: repeated lines are left out
// and summed up.
func TestLogFloodSummarised(t *testing.T) {
	var buf testutil.LogBuffer
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	log := slog.New(newFloodHandler(slog.NewTextHandler(&buf, nil), clock))
	for range 1000 {
		log.Warn("authentication failed", "src", "192.0.2.1:5060")
	}
	log.Info("registered", "peer", "x")
	now = now.Add(logWindow)
	log.Warn("authentication failed", "src", "192.0.2.1:5060")
	out := buf.String()
	if n := strings.Count(out, "msg=\"authentication failed\""); n != logBurst+1 {
		t.Errorf("%d failure lines, want %d", n, logBurst+1)
	}
	if !strings.Contains(out, `msg="repeated log lines left out" message="authentication failed" count=980`) {
		t.Errorf("no summary:\n%s", out)
	}
	if !strings.Contains(out, "msg=registered ") {
		t.Error("another message was held back")
	}
}

// Past maxcalls a new INVITE gets 503 with Retry-After at the entry,
// before any call state exists; the call in progress is untouched.
func TestShedAboveMaxCalls(t *testing.T) {
	cfg := testConfig("")
	cfg.General.MaxCalls = 1
	box := startBox(t, cfg, nil)
	callee := registeredUA(t, box.Addr(), ispLine, "3600")
	caller := newRawUA(t, box.Addr())
	caller.sendInviteAuth(clientLine, "88567682", "shed-1@127.0.0.1", "", testSDP)
	for deadline := time.Now().Add(5 * time.Second); ; {
		m := callee.recv(time.Until(deadline))
		if req, ok := m.(*sip.Request); ok && req.Method == sip.INVITE {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first call never reached the callee")
		}
	}
	caller.sendInviteAuth(clientLine, "88567682", "shed-2@127.0.0.1", "", testSDP)
	var r *sip.Response
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		if m, ok := caller.recv(time.Until(deadline)).(*sip.Response); ok && m.CallID().Value() == "shed-2@127.0.0.1" && m.StatusCode >= 200 {
			r = m
			break
		}
	}
	if r == nil || r.StatusCode != 503 || r.GetHeader("Retry-After") == nil {
		t.Fatalf("second call past maxcalls: want 503 with Retry-After, got %v", r)
	}
	if calls := box.Calls(); len(calls) != 1 {
		t.Errorf("%d calls, want the first one only", len(calls))
	}
	if box.EdgeStats().Shed != 1 {
		t.Errorf("shed counter %d", box.EdgeStats().Shed)
	}
}

// BenchmarkUnauthenticated is the cost of one request from a stranger at
// the entry: parse, admission, the stateless answer. B/op is the memory
// per unauthenticated request; none of it outlives the request.
func BenchmarkUnauthenticated(b *testing.B) {
	s, err := New(testConfig(""), Options{})
	if err != nil {
		b.Fatal(err)
	}
	s.applyLimits(General{SourceRate: -1, GuessRate: -1})
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	s.addr = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 8, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	go func() { // keep the sink's buffer from filling
		buf := make([]byte, 65535)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	src := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	box := s.addr.String()
	for _, c := range []struct{ name, msg, body string }{
		{"INVITE", inviteText(box, int(src.Port()), clientLine, "88567682", 1, "bench@127.0.8.1", ""), testSDP},
		{"REGISTER", fmt.Sprintf("REGISTER sip:%[1]s SIP/2.0\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bKb;rport\nFrom: <sip:%[3]s@%[1]s>;tag=b\nTo: <sip:%[3]s@%[1]s>\nCall-ID: bench-reg@127.0.8.1\nCSeq: 1 REGISTER\nContact: <sip:%[3]s@%[2]s>\nMax-Forwards: 70\nUser-Agent: Linksys/PAP2T-5.1.6(LS)\nExpires: 3600", box, src, clientLine), ""},
		{"OPTIONS", optionsText(box, int(src.Port()), "bench-opt@127.0.8.1"), ""},
	} {
		data := wire(c.msg, c.body)
		from := net.UDPAddrFromAddrPort(src)
		b.Run(c.name, func(b *testing.B) {
			p := sip.NewParser()
			st0 := s.EdgeStats()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				s.datagram(conn, nil, p, data, from, src, false, false, time.Now())
			}
			st := s.EdgeStats()
			b.ReportMetric(float64(st.StatelessBytesOut-st0.StatelessBytesOut)/float64(st.StatelessBytesIn-st0.StatelessBytesIn), "out/in")
		})
	}
}

// The loop check looks up our own address toward every Via host it is
// shown; strangers choose those hosts, so the cache behind it stays bounded.
func TestLocalIPCacheBounded(t *testing.T) {
	s, err := New(testConfig(""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * maxLocalIPs {
		s.localIP(netip.AddrFrom4([4]byte{127, 10, byte(i >> 8), byte(i)}))
	}
	if n := len(s.localIPs); n > maxLocalIPs {
		t.Errorf("%d cached addresses, want at most %d", n, maxLocalIPs)
	}
}
