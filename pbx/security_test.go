package pbx

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
)

func TestUnauthenticatedInviteRefused(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := newRawUA(t, box.Addr())
	r := u.invite(clientLine, "88567682", 1, "noauth-1@127.0.0.1", "")
	if r == nil || r.StatusCode != 401 {
		t.Fatalf("want 401, got %v", r)
	}
	wa := r.GetHeader("WWW-Authenticate")
	if wa == nil || !strings.HasPrefix(wa.Value(), `Digest algorithm=MD5, realm="asterisk", nonce="`) {
		t.Errorf("challenge %v", wa)
	}
	// a made-up nonce is no better
	r = u.invite(clientLine, "88567682", 2, "noauth-1@127.0.0.1",
		`Digest username="pap2t-client", realm="asterisk", nonce="0123", uri="sip:x", response="00000000000000000000000000000000"`)
	if r == nil || r.StatusCode != 401 {
		t.Fatalf("forged nonce: want 401, got %v", r)
	}
	// a guest (unknown From) never reaches the dial plan either
	r = u.invite("guest", "88567682", 1, "noauth-2@127.0.0.1", "")
	if r == nil || r.StatusCode != 401 {
		t.Fatalf("guest: want 401, got %v", r)
	}
	box.ev.mu.Lock()
	defer box.ev.mu.Unlock()
	for _, e := range box.ev.evs {
		if _, ok := e.(bus.CallStarted); ok {
			t.Fatal("an unauthenticated INVITE reached the dial plan")
		}
	}
}

// alwaysauthreject: an unknown user and a wrong password look the same,
// for REGISTER and for INVITE, at the challenge and at the refusal.
func TestAlwaysAuthReject(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	type answer struct {
		Code    int
		Reason  string
		Headers []string
	}
	run := func(user, pass, method string) (first, second answer) {
		u := newRawUA(t, box.Addr())
		switch method {
		case "REGISTER":
			r := u.register(user, 1, "", "", "")
			first = answer{r.StatusCode, r.Reason, headerNames(r)}
			r = u.register(user, 2, "", "", authz(r, user, pass, "REGISTER", "sip:"+box.Addr().String()))
			second = answer{r.StatusCode, r.Reason, headerNames(r)}
		case "INVITE":
			r := u.invite(user, "88567682", 1, "aar-"+user+"@x", "")
			first = answer{r.StatusCode, r.Reason, headerNames(r)}
			r = u.invite(user, "88567682", 2, "aar-"+user+"@x", authz(r, user, pass, "INVITE", "sip:88567682@"+box.Addr().String()))
			second = answer{r.StatusCode, r.Reason, headerNames(r)}
		}
		return
	}
	for _, m := range []string{"REGISTER", "INVITE"} {
		wf, ws := run(clientLine, "wrong", m)
		uf, us := run("nosuchuser", "whatever", m)
		if wf.Code != 401 || ws.Code != 403 {
			t.Errorf("%s wrong password: %+v %+v", m, wf, ws)
		}
		if d := cmp.Diff(wf, uf); d != "" {
			t.Errorf("%s challenge differs (-wrong password +unknown user):\n%s", m, d)
		}
		if d := cmp.Diff(ws, us); d != "" {
			t.Errorf("%s refusal differs (-wrong password +unknown user):\n%s", m, d)
		}
	}
	// AuthFailed events for both
	box.ev.wait(t, 2*time.Second, func(e bus.Event) bool { a, ok := e.(bus.AuthFailed); return ok && a.User == "nosuchuser" })
	box.ev.wait(t, 2*time.Second, func(e bus.Event) bool { a, ok := e.(bus.AuthFailed); return ok && a.User == clientLine })
}

// A nonce is good for one request: replaying a whole Authorization gets a
// stale challenge, not a second registration.
func TestNonceReplayRefused(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := newRawUA(t, box.Addr())
	r := u.register(clientLine, 1, "", "", "")
	a := authz(r, clientLine, secret, "REGISTER", "sip:"+box.Addr().String())
	if r := u.register(clientLine, 2, "", "", a); r.StatusCode != 200 {
		t.Fatalf("first use: %d", r.StatusCode)
	}
	r = u.register(clientLine, 3, "", "", a)
	if r.StatusCode != 401 || !strings.Contains(r.GetHeader("WWW-Authenticate").Value(), "stale=true") {
		t.Fatalf("replay: %s %v", r.StartLine(), r.GetHeader("WWW-Authenticate"))
	}
}

func TestBanAfterFailures(t *testing.T) {
	cfg := testConfig("")
	cfg.General.MaxAuthFailures = 3
	box := startBox(t, cfg, nil)
	u := newRawUA(t, box.Addr())
	for i := 0; i < 3; i++ {
		r := u.register(clientLine, 2*i+1, "", "", "")
		r = u.register(clientLine, 2*i+2, "", "", authz(r, clientLine, "wrong", "REGISTER", "sip:"+box.Addr().String()))
		if r.StatusCode != 403 {
			t.Fatalf("attempt %d: %d", i, r.StatusCode)
		}
	}
	ev := box.ev.wait(t, 2*time.Second, func(e bus.Event) bool { _, ok := e.(bus.SourceBanned); return ok }).(bus.SourceBanned)
	if ev.Addr.String() != "127.0.0.1" {
		t.Errorf("banned %v", ev.Addr)
	}
	if r := u.register(clientLine, 10, "", "", ""); r != nil {
		t.Errorf("banned source got an answer: %s", r.StartLine())
	}
	if _, ok := box.Bans()[ev.Addr]; !ok {
		t.Error("Bans() does not list it")
	}
}

func TestMalformedDroppedAndCounted(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := newRawUA(t, box.Addr())
	u.sendRaw([]byte("this is not SIP\r\n\r\n"))
	u.sendRaw([]byte("INVITE sip:1@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nContent-Length: 0\r\n\r\n")) // no From/To/Call-ID/CSeq
	// the box still works
	u.send(optionsText(box.Addr().String(), u.port(), "probe@127.0.0.1"), "")
	// sipgo may answer the INVITE without CSeq with a 400 of its own, in
	// either order with the OPTIONS' answer: look for the OPTIONS'.
	var r *sip.Response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if r = u.final(time.Until(deadline)); r == nil || (r.CSeq() != nil && r.CSeq().MethodName == sip.OPTIONS) {
			break
		}
	}
	if r == nil || r.StatusCode != 200 {
		t.Fatalf("OPTIONS after garbage: %v", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for box.Malformed() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if box.Malformed() < 1 {
		t.Errorf("Malformed() = %d", box.Malformed())
	}
}

func TestRegistrarExpiryClampQueryUnregister(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := newRawUA(t, box.Addr())
	check := func(expires, want string) {
		t.Helper()
		r := u.registerAuth(clientLine, secret, expires)
		if r.StatusCode != 200 || r.GetHeader("Expires").Value() != want || !strings.HasSuffix(r.GetHeader("Contact").Value(), ";expires="+want) {
			t.Errorf("Expires %s: %s Expires=%v Contact=%v", expires, r.StartLine(), r.GetHeader("Expires"), r.GetHeader("Contact"))
		}
	}
	check("10", "60")      // minexpiry
	check("99999", "3600") // maxexpiry
	check("", "120")       // defaultexpiry
	// query: no Contact
	r := u.register(clientLine, 1, "", "-", "")
	r = u.register(clientLine, 2, "", "-", authz(r, clientLine, secret, "REGISTER", "sip:"+box.Addr().String()))
	if r.StatusCode != 200 || r.GetHeader("Contact") == nil || !strings.Contains(r.GetHeader("Contact").Value(), itoa(u.port())) {
		t.Errorf("query: %s %v", r.StartLine(), r.GetHeader("Contact"))
	}
	// unregister with Contact: * and Expires: 0
	r = u.register(clientLine, 3, "0", "*", "")
	r = u.register(clientLine, 4, "0", "*", authz(r, clientLine, secret, "REGISTER", "sip:"+box.Addr().String()))
	if r.StatusCode != 200 {
		t.Fatalf("unregister: %s", r.StartLine())
	}
	box.ev.wait(t, 2*time.Second, func(e bus.Event) bool {
		ev, ok := e.(bus.PeerUnregistered)
		return ok && ev.Peer == clientLine && ev.Reason == "unregister"
	})
	for _, p := range box.Peers() {
		if p.Name == clientLine && p.Host.IsValid() {
			t.Errorf("still has an address: %+v", p)
		}
	}
}

// nat=no: a response goes to the Via's port (RFC 3261 §18.2.2), not to
// the packet's source port; nat=force_rport: to the source, with rport
// and received (RFC 3581).
func TestResponseRoutingPerNAT(t *testing.T) {
	cfg := testConfig("")
	cfg.Peers[0].NAT = "force_rport" // the ISP line
	box := startBox(t, cfg, nil)
	for _, tt := range []struct {
		user        string
		toViaSocket bool
	}{{clientLine, true}, {ispLine, false}} {
		sender := newRawUA(t, box.Addr())
		viaSock := newRawUA(t, box.Addr())
		sender.send(sipReq{method: sip.OPTIONS, uri: "sip:" + box.Addr().String(), via: viaSock.addr(),
			from: "<sip:" + tt.user + "@127.0.0.1>;tag=n1", to: "<sip:" + box.Addr().String() + ">",
			callID: "nat-" + tt.user + "@127.0.0.1", cseq: 1}.String(), "")
		got, other := viaSock, sender
		if !tt.toViaSocket {
			got, other = sender, viaSock
		}
		r := got.final(3 * time.Second)
		if r == nil {
			t.Fatalf("%s: no response where expected", tt.user)
		}
		if m := other.recv(100 * time.Millisecond); m != nil {
			t.Errorf("%s: response also at the other socket", tt.user)
		}
		rp, hasR := r.Via().Params.Get("rport")
		if tt.toViaSocket == hasR || (!tt.toViaSocket && rp != itoa(sender.port())) {
			t.Errorf("%s: Via %s", tt.user, r.Via().Value())
		}
	}
}

// A peer's deny= is answered like an unknown user (chan_sip under
// alwaysauthreject): 401, then 403, never 200.
func TestPeerACL(t *testing.T) {
	cfg := testConfig("")
	cfg.Peers[1].ACL = []ACLRule{{Permit: false, Prefix: mustPrefix("127.0.0.0/8")}}
	box := startBox(t, cfg, nil)
	u := newRawUA(t, box.Addr())
	r := u.register(clientLine, 1, "", "", "")
	if r.StatusCode != 401 {
		t.Fatalf("first: %s", r.StartLine())
	}
	r = u.register(clientLine, 2, "", "", authz(r, clientLine, secret, "REGISTER", "sip:"+box.Addr().String()))
	if r.StatusCode != 403 {
		t.Fatalf("right password from a denied address: %s", r.StartLine())
	}
	// the box-wide ACL too
	cfg = testConfig("")
	cfg.General.ACL = []ACLRule{{Permit: false, Prefix: mustPrefix("0.0.0.0/0")}, {Permit: true, Prefix: mustPrefix("10.0.0.0/8")}}
	box2 := startBox(t, cfg, nil)
	u2 := newRawUA(t, box2.Addr())
	r = u2.register(ispLine, 1, "", "", "")
	r = u2.register(ispLine, 2, "", "", authz(r, ispLine, secret, "REGISTER", "sip:"+box2.Addr().String()))
	if r.StatusCode != 403 {
		t.Fatalf("box ACL: %s", r.StartLine())
	}
}

// A binding that is not refreshed expires (10 s after its Expires, like
// chan_sip), with the injected clock.
func TestBindingExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := bus.New(nil)
	ev := recordEvents(t, b)
	s, err := New(testConfig(""), Options{Bus: b, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s)
	registeredUA(t, s.Addr(), clientLine, "60")
	mu.Lock()
	now = now.Add(65 * time.Second) // expired but within the grace
	mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	if !peerByName(s, clientLine).Host.IsValid() {
		t.Fatal("expired before the grace period")
	}
	mu.Lock()
	now = now.Add(10 * time.Second)
	mu.Unlock()
	ev.wait(t, 5*time.Second, func(e bus.Event) bool {
		u, ok := e.(bus.PeerUnregistered)
		return ok && u.Peer == clientLine && u.Reason == "expired"
	})
}

// A denied source is logged and reported as the ACL that denied it, not as
// an unknown user, and however often it tries it is not banned: the
// admin must see "ACL denied", not chase a wrong password (issue: an ACL
// denial was logged as "no such peer" and led to a ban).
func TestACLDenialLoggedAsACL(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       func(*Config)
		wantWhich string
	}{
		{"peer", func(c *Config) { c.Peers[1].ACL = []ACLRule{{Permit: false, Prefix: mustPrefix("127.0.0.0/8")}} }, "peer [" + clientLine + "] permit/deny"},
		{"general", func(c *Config) {
			c.General.ACL = []ACLRule{{Permit: false, Prefix: mustPrefix("0.0.0.0/0")}, {Permit: true, Prefix: mustPrefix("10.0.0.0/8")}}
		}, "[general] permit/deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("")
			cfg.General.MaxAuthFailures = 2
			tc.set(&cfg)
			var logs testutil.LogBuffer
			b := bus.New(nil)
			ev := recordEvents(t, b)
			s, err := New(cfg, Options{Bus: b, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			serve(t, s)
			u := newRawUA(t, s.Addr())
			for i := range 3 {
				r := u.register(clientLine, 2*i+1, "", "", "")
				if r == nil || r.StatusCode != 401 {
					t.Fatalf("round %d: want the fake challenge 401, got %v", i, r)
				}
				r = u.register(clientLine, 2*i+2, "", "", authz(r, clientLine, secret, "REGISTER", "sip:"+s.Addr().String()))
				if r == nil || r.StatusCode != 403 {
					t.Fatalf("round %d: right password from a denied address: want 403, got %v", i, r)
				}
			}
			ev.wait(t, 2*time.Second, func(e bus.Event) bool {
				a, ok := e.(bus.AuthFailed)
				return ok && a.Reason == "ACL: "+tc.wantWhich
			})
			ev.mu.Lock()
			for _, e := range ev.evs {
				switch e := e.(type) {
				case bus.SourceBanned:
					t.Errorf("an ACL denial led to a ban: %v", e)
				case bus.AuthFailed:
					if !strings.HasPrefix(e.Reason, "ACL: ") {
						t.Errorf("an ACL denial reported as %q", e.Reason)
					}
				}
			}
			ev.mu.Unlock()
			out := logs.String()
			if !strings.Contains(out, `msg="ACL denied"`) || !strings.Contains(out, `acl="`+tc.wantWhich+`"`) {
				t.Errorf("log does not name the ACL:\n%s", out)
			}
			if strings.Contains(out, "no such peer") || strings.Contains(out, "banned") {
				t.Errorf("log blames the wrong thing:\n%s", out)
			}
		})
	}
}
