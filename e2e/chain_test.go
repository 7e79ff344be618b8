package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/store"
	"github.com/isp-box/isp-box/internal/testutil"
)

var (
	gateway = netip.MustParseAddr("192.168.32.1")
	client  = netip.MustParseAddr("192.168.32.105") // [ppp ttyUSB0]'s remote
	seedDNS = netip.MustParseAddr("8.8.8.8")
)

// TestDemo runs `isp-box demo` as the README says and checks that it
// printed each step of the chain.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("dials in through the whole chain")
	}
	checkGoroutines(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out testutil.LogBuffer
	err := demo.Run(ctx, &out, demo.Options{RingInterval: ringInterval})
	text := out.String()
	if err != nil || testing.Verbose() {
		t.Logf("demo output:\n%s", text)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Registered SIP 'pap2t-ispmodem'",
		"Registered SIP 'pap2t-client'",
		"Peer 'pap2t-ispmodem' is now Reachable.",
		"Executing [88567682@default:1]",
		"Line ttyUSB0 RING 1",
		"Line ttyUSB0 RING 2",
		"answered call",
		"client modem: CONNECT 28800",
		"PPP up: local 192.168.32.105, gateway 192.168.32.1, DNS [8.8.8.8 8.8.8.8]",
		"ping 192.168.32.1:",
		"DNS via 192.168.32.1: localhost = [127.0.0.1]",
		"HTTP GET through the box: 200 OK",
		"ended: ANSWER",
		"demo finished: the whole chain works",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(text, "RING 3") {
		t.Errorf("the line answered after more rings than the config's rings 2")
	}
}

// TestTextLogin is the seed's way in: mgetty prints login:, the caller
// types dial / dial, and the "shell" (pppd, noauth) starts PPP. The line
// must prompt even though AutoPPP is on (mgetty's default), and the
// session is the logged-in user's.
func TestTextLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("dials in through the whole chain")
	}
	cfg := pap2t(t, nil)
	if !cfg.Lines[0].Modem.AutoPPP || cfg.Lines[0].PPP.RequireAuth {
		t.Fatalf("pap2t.conf: AutoPPP %v, PPP auth %v: want the seed's AutoPPP on and noauth", cfg.Lines[0].Modem.AutoPPP, cfg.Lines[0].PPP.RequireAuth)
	}
	w := startWorld(t, cfg, worldOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var steps []string
	s, err := demo.Dial(ctx, w.Clients["pap2t-client"].Path(), demo.DialOptions{
		Number: "88567682", User: "dial", Password: "dial", Login: true,
		Step: func(f string, a ...any) { steps = append(steps, fmt.Sprintf(f, a...)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("steps: %q", steps)
	if !containsPrefix(steps, "login prompt") || !containsPrefix(steps, "password prompt") {
		t.Errorf("no login and password prompts in %q", steps)
	}
	if s.PPP.Local() != client || s.PPP.Remote() != gateway {
		t.Errorf("PPP local %v remote %v, want %v %v", s.PPP.Local(), s.PPP.Remote(), client, gateway)
	}
	if s.PPP.AuthProto() != "" {
		t.Errorf("PPP authenticated with %q after a text login; the seed's pppd ran noauth", s.PPP.AuthProto())
	}
	if _, err := s.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping the gateway: %v", err)
	}
	st := w.Box.Status()
	if len(st.Sessions) != 1 || st.Sessions[0].User != "dial" {
		t.Errorf("box sessions %+v: want one of user dial", st.Sessions)
	}
	if err := s.HangUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitLinesIdle(ctx); err != nil {
		t.Fatal(err)
	}
	down := waitEvent(t, w, 30*time.Second, func(e bus.PPPDown) bool { return true })
	if down.User != "dial" {
		t.Errorf("session record user %q, want dial", down.User)
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestHangUp: the caller hangs up, by LCP (Windows' Disconnect) or by the
// modem alone (+++ ATH: the box sees only the carrier go); either way the
// line goes idle, the box holds no session and no call, and the database
// keeps exactly one call record and one session record.
func TestHangUp(t *testing.T) {
	if testing.Short() {
		t.Skip("dials in through the whole chain")
	}
	for _, tc := range []struct {
		name     string
		hangUp   func(*demo.Session, context.Context) error
		cause    string
		hangupBy string
	}{
		{"lcp-terminate", (*demo.Session).HangUp, "peer terminated", "callee"},
		{"modem-ath", (*demo.Session).ModemHangUp, "carrier lost", "caller"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWorld(t, pap2t(t, nil), worldOpts{})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			page := strings.Repeat("x", 3000)
			port := webServer(t, page)
			up := connectToUp(t, w, "ttyUSB0")
			s, err := demo.Dial(ctx, w.Clients["pap2t-client"].Path(), demo.DialOptions{Number: "88567682"})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case d := <-up:
				t.Logf("hardware line: CONNECT -> IPCP up on the box %v", d.Round(time.Millisecond))
			case <-time.After(10 * time.Second):
				t.Error("no CONNECT and PPP up on ttyUSB0 seen on the bus")
			}
			if err := fetch(ctx, s, port, page); err != nil {
				t.Fatal(err)
			}
			if st := w.Box.Status(); len(st.Sessions) != 1 || len(st.Calls) != 1 || st.Lines[0].State != "connected" {
				t.Fatalf("while up: %d sessions, %d calls, line %s: want 1, 1, connected", len(st.Sessions), len(st.Calls), st.Lines[0].State)
			}
			start := time.Now()
			if err := tc.hangUp(s, ctx); err != nil {
				t.Fatal(err)
			}
			if err := w.WaitLinesIdle(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("torn down %v after the hang-up", time.Since(start).Round(time.Millisecond))
			for _, li := range w.ATA.Describe() {
				if li.Call != ata.Idle {
					t.Errorf("ATA line %s still %v", li.User, li.Call)
				}
			}
			if m := w.ISP["ttyUSB0"]; m.Online() {
				t.Error("the ISP modem still has a carrier")
			}
			// The records are committed when the store's reliable
			// subscription has them; Close drains it.
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := store.Open(ctx, w.DatabasePath())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			calls, err := db.Calls(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			sessions, err := db.Sessions(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) != 1 || len(sessions) != 1 {
				t.Fatalf("records: %d calls %+v, %d sessions %+v: want one each", len(calls), calls, len(sessions), sessions)
			}
			c, p := calls[0], sessions[0]
			t.Logf("call: %v", c)
			t.Logf("session: %v", p)
			if c.Status != "ANSWER" || c.Callee != "pap2t-ispmodem" || c.From != "pap2t-client" || c.To != "88567682" || c.SIPCode != 200 {
				t.Errorf("call record %+v: want ANSWER, 200, pap2t-client -> 88567682 (pap2t-ispmodem)", c)
			}
			if c.HangupBy != tc.hangupBy {
				t.Errorf("call hung up by %q, want %q", c.HangupBy, tc.hangupBy)
			}
			if c.Answer.IsZero() || !c.End.After(c.Answer) {
				t.Errorf("call answered %v ended %v", c.Answer, c.End)
			}
			if p.Cause != tc.cause {
				t.Errorf("session cause %q, want %q", p.Cause, tc.cause)
			}
			// The caller ID of a modem call: the SIP caller.
			if p.CallerID != "pap2t-client" {
				t.Errorf("session caller %q, want the SIP caller pap2t-client", p.CallerID)
			}
			if p.BytesIn == 0 || p.BytesOut < uint64(len(page)) || p.Remote != client || p.Line != "ttyUSB0" {
				t.Errorf("session record %+v: want bytes both ways (out >= %d), remote %v, line ttyUSB0", p, len(page), client)
			}
			if p.CallID == "" || p.CallID != c.CallID {
				t.Errorf("session's call %q, call record's id %q: want the same", p.CallID, c.CallID)
			}
		})
	}
}

// twoCallers is one ISP modem line and two callers' ATA ports.
const twoCallers = `
[general]
udpbindaddr=127.0.0.1:5060
context=default

[network]
gateway = 192.168.32.1
pool = 192.168.32.0/24

[isp]
type=friend
context=default
secret=isp-secret
host=dynamic
qualify=200
directmedia=yes

[caller1]
type=friend
context=default
secret=secret1
host=dynamic
qualify=200
directmedia=yes

[caller2](caller1)
secret=secret2

[default]
exten => _X!,1,Dial(SIP/isp,20)

[mgetty]
rings 2
port ttyUSB0
 peer isp

[ppp]
ms-dns 192.168.32.1
asyncmap 0

[ppp ttyUSB0]
192.168.32.1:192.168.32.105
noauth
`

// TestBusy: while the ISP modem is in a call, a second caller gets BUSY
// from the box (486) and the ISP modem never rings for it; once the first
// caller hangs up, the second gets through.
func TestBusy(t *testing.T) {
	if testing.Short() {
		t.Skip("dials in through the whole chain")
	}
	w := startWorld(t, parse(t, "busy.conf", twoCallers), worldOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first, err := demo.Dial(ctx, w.Clients["caller1"].Path(), demo.DialOptions{Number: "5551000", Init: []string{"ATX4"}})
	if err != nil {
		t.Fatal(err)
	}
	rings := len(eventsOf[bus.LineRing](w, nil))
	if rings != 2 {
		t.Errorf("%d RINGs for the first call, want 2 (rings 2)", rings)
	}
	ispStates := len(w.ataStates("isp"))

	_, err = demo.Dial(ctx, w.Clients["caller2"].Path(), demo.DialOptions{Number: "5551000", Init: []string{"ATX4"}})
	var re *demo.ResultError
	if !errors.As(err, &re) || re.Result != "BUSY" {
		t.Fatalf("second caller: %v, want BUSY", err)
	}
	ended := waitEvent(t, w, 30*time.Second, func(e bus.CallEnded) bool { return e.From == "caller2" })
	if ended.Status != "BUSY" || ended.SIPCode != 486 || !ended.Answer.IsZero() {
		t.Errorf("second call's record %+v: want BUSY, 486, never answered", ended)
	}
	// Nothing may ring now: give a ring of the ISP modem (if the box had
	// sent the INVITE on) several cadences to show up.
	time.Sleep(4 * ringInterval)
	if n := len(eventsOf[bus.LineRing](w, nil)); n != rings {
		t.Errorf("%d RINGs after the busy call, want still %d", n, rings)
	}
	if st := w.ataStates("isp"); len(st) != ispStates {
		t.Errorf("the ISP's ATA port went through %v after the busy call: it was offered the call", st[ispStates:])
	}
	if _, err := first.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("the first caller's link after the busy call: %v", err)
	}

	if err := first.HangUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitLinesIdle(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := demo.Dial(ctx, w.Clients["caller2"].Path(), demo.DialOptions{Number: "5551000", Init: []string{"ATX4"}})
	if err != nil {
		t.Fatalf("second caller once the line is free: %v", err)
	}
	if _, err := second.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping: %v", err)
	}
	if err := second.HangUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitLinesIdle(ctx); err != nil {
		t.Fatal(err)
	}
}
