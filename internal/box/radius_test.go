package box_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/radius/radiustest"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/ppp"
)

// radiusUsers is FreeRADIUS's users file for these tests.
const radiusUsers = `alice Cleartext-Password := "wonderland"
	Framed-IP-Address = 192.168.32.77,
	Class = "gold"
bob Auth-Type := Reject
	Reply-Message = "Bob, your account is overdue"
carol Cleartext-Password := "carrots"
	Session-Timeout = 6,
	Acct-Interim-Interval = 2,
	Class = "silver"
dave Cleartext-Password := "diver"
`

// radiusConfig is the [radius] section and the line's PPP options for a
// box that checks users in [users] first, then at srv.
func radiusConfig(srv *radiustest.Server, secret, nas, proto string) string {
	return fmt.Sprintf(`
[radius]
authserver = %s %s
acctserver = %s %s
timeout = 2
retries = 1
nas-identifier = %s
nas-ip-address = 127.0.0.1
auth-order = file radius

[ppp ttyUSB0]
auth
require-%s
`, srv.AuthAddr(), secret, srv.AcctAddr(), secret, nas, proto)
}

// writeRadius writes the example config with [radius] and the line's
// single auth protocol: the example's +pap in [ppp] is commented out, as
// the order of the line's protocols is the order they are offered.
func (r *rig) writeRadius(srv *radiustest.Server, secret, nas, proto string) {
	r.t.Helper()
	r.writeRaw(mustReplace(r.t, r.configText(radiusConfig(srv, secret, nas, proto)), "\n+pap ", "\n;+pap "))
}

// radiusBox starts FreeRADIUS with radiusUsers, and a box that checks
// users in [users], then there, with secret (the server's when empty) and
// the line's one auth protocol; it returns once the box can take a call.
func radiusBox(t *testing.T, secret, proto string) (*radiustest.Server, *rig, *running) {
	t.Helper()
	srv := radiustest.Start(t, radiustest.Options{Users: radiusUsers})
	if secret == "" {
		secret = srv.Secret()
	}
	r := newRig(t)
	r.writeRadius(srv, secret, "box-a", proto)
	return srv, r, r.readyBox()
}

func (r *rig) dialAs(ctx context.Context, user, password string) (*demo.Session, error) {
	r.t.Helper()
	return demo.Dial(ctx, r.cli.Path(), demo.DialOptions{Number: "88567682", User: user, Password: password, Log: r.log("")})
}

// TestRadiusDialIn (issue 14): a real dial-in through the whole chain
// with each PPP method, checked by a real FreeRADIUS: accepted with the
// right password (and its Framed-IP-Address given to the client),
// refused with a wrong one, and the server's Reply-Message shown to a
// refused client.
func TestRadiusDialIn(t *testing.T) {
	ctx := slow(t, "dials through the box against FreeRADIUS", 4*time.Minute)
	srv, r, b := radiusBox(t, "", "pap")
	for _, proto := range []string{"pap", "chap", "mschap", "mschap-v2"} {
		t.Run(proto, func(t *testing.T) {
			// A restart rather than a reload: the line takes a reload
			// at its next idle, which a dial right after would race.
			b.Stop(t)
			r.writeRadius(srv, srv.Secret(), "box-a", proto)
			b = r.startBox()
			r.waitReady(b)
			s, err := r.dialAs(ctx, "alice", "wonderland")
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			if got := string(s.PPP.AuthProto()); got != proto {
				t.Errorf("authenticated with %q, want %q", got, proto)
			}
			if got := s.PPP.Local(); got != netip.MustParseAddr("192.168.32.77") {
				t.Errorf("client address %s, want RADIUS's Framed-IP-Address 192.168.32.77", got)
			}
			st := b.Status()
			if len(st.Sessions) != 1 || st.Sessions[0].AAA != "radius" || st.Sessions[0].User != "alice" {
				t.Errorf("sessions: %+v", st.Sessions)
			}
			hangUp(t, ctx, s, b.Box)
			r.readClient("NO CARRIER")

			_, err = r.dialAs(ctx, "alice", "not-her-password")
			if !errors.Is(err, ppp.ErrAuthFailed) {
				t.Errorf("wrong password: %v, want %v", err, ppp.ErrAuthFailed)
			}
			r.readClient("NO CARRIER")
			waitPeersReady(t, b.Box)
		})
	}
	t.Run("reply-message", func(t *testing.T) {
		_, err := r.dialAs(ctx, "bob", "anything")
		if !errors.Is(err, ppp.ErrAuthFailed) {
			t.Errorf("bob: %v", err)
		}
		r.readClient("NO CARRIER")
		waitPeersReady(t, b.Box)
		if !strings.Contains(r.logs.Tail(400), "Bob, your account is overdue") {
			t.Error("the client was not shown the server's Reply-Message")
		}
	})
	t.Run("file-first", func(t *testing.T) {
		// dial is in [users]: checked there, FreeRADIUS never asked.
		s, err := r.dialAs(ctx, "dial", "dial")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if st := b.Status(); len(st.Sessions) != 1 || st.Sessions[0].AAA != "file" {
			t.Errorf("sessions: %+v", st.Sessions)
		}
		hangUp(t, ctx, s, b.Box)
		r.readClient("NO CARRIER")
		if strings.Contains(srv.Log(), "[dial/") {
			t.Errorf("a user of [users] was sent to RADIUS")
		}
	})
}

// acctFor returns the detail file's records of one session, in order.
func acctFor(srv *radiustest.Server, session string) []radiustest.Record {
	var out []radiustest.Record
	for _, rec := range srv.Accounting() {
		if rec["Acct-Session-Id"] == session {
			out = append(out, rec)
		}
	}
	return out
}

func statuses(recs []radiustest.Record) string {
	var s []string
	for _, r := range recs {
		s = append(s, r["Acct-Status-Type"])
	}
	return strings.Join(s, ",")
}

func pppDown(evs []bus.Event, session string) (bus.PPPDown, bool) {
	for _, ev := range evs {
		if d, ok := ev.(bus.PPPDown); ok && d.Session == session {
			return d, true
		}
	}
	return bus.PPPDown{}, false
}

// TestRadiusAccounting (issue 14): Start at IPCP up, Interim-Updates at
// the server's Acct-Interim-Interval, and a Stop whose counters are the
// session's own, when the server's Session-Timeout ends the session.
func TestRadiusAccounting(t *testing.T) {
	ctx := slow(t, "dials through the box against FreeRADIUS", 3*time.Minute)
	srv, r, b := radiusBox(t, "", "mschap-v2")

	start := time.Now()
	s, err := r.dialAs(ctx, "carol", "carrots")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	id := b.Status().Sessions[0].ID
	for range 3 {
		if _, err := s.Net.Ping(ctx, gateway); err != nil {
			t.Errorf("ping: %v", err)
		}
	}
	// Session-Timeout 6 ends it; the line goes idle again.
	testutil.WaitFor(t, 30*time.Second, "session ended by Session-Timeout", func() (bool, string) {
		_, ok := pppDown(b.events.all(), id)
		return ok, "still up"
	})
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("session lasted %v; Session-Timeout was 6 s", d)
	}
	s.HangUp(ctx)
	waitPeersReady(t, b.Box)
	down, _ := pppDown(b.events.all(), id)
	testutil.WaitFor(t, 15*time.Second, "Stop in the detail file", func() (bool, string) {
		recs := acctFor(srv, id)
		return len(recs) > 0 && recs[len(recs)-1]["Acct-Status-Type"] == "Stop", statuses(recs)
	})
	recs := acctFor(srv, id)
	if recs[0]["Acct-Status-Type"] != "Start" || !strings.Contains(statuses(recs), "Interim-Update") {
		t.Errorf("records %s, want Start, Interim-Update..., Stop", statuses(recs))
	}
	stop := recs[len(recs)-1]
	want := map[string]string{
		"User-Name":            "carol",
		"NAS-Identifier":       "box-a",
		"NAS-IP-Address":       "127.0.0.1",
		"NAS-Port-Type":        "Async",
		"NAS-Port-Id":          "ttyUSB0",
		"NAS-Port":             "0",
		"Calling-Station-Id":   "pap2t-client",
		"Called-Station-Id":    "88567682",
		"Acct-Authentic":       "RADIUS",
		"Class":                "0x73696c766572",
		"Acct-Terminate-Cause": "Session-Timeout",
		"Acct-Input-Octets":    strconv.FormatUint(down.BytesIn, 10),
		"Acct-Output-Octets":   strconv.FormatUint(down.BytesOut, 10),
		"Acct-Input-Packets":   strconv.FormatUint(down.PktsIn, 10),
		"Acct-Output-Packets":  strconv.FormatUint(down.PktsOut, 10),
		"Acct-Input-Gigawords": "0",
	}
	for k, v := range want {
		if stop[k] != v {
			t.Errorf("Stop %s = %q, want %q", k, stop[k], v)
		}
	}
	if down.BytesIn == 0 || down.PktsOut == 0 {
		t.Errorf("no traffic counted: %+v", down)
	}
	if st, _ := strconv.Atoi(stop["Acct-Session-Time"]); st < 5 || st > 10 {
		t.Errorf("Acct-Session-Time %d, want about 6", st)
	}
}

// TestRadiusAccountingOutage (issue 14): the server is away when a session
// ends, and the box restarts before it is back: the records wait in the
// store and reach the server when it returns, in order.
func TestRadiusAccountingOutage(t *testing.T) {
	ctx := slow(t, "dials through the box against FreeRADIUS", 3*time.Minute)
	srv, r, b := radiusBox(t, "", "chap")

	// 1: the server stops mid-session; the Stop is delivered once it is back.
	s, err := r.dialAs(ctx, "dave", "diver")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	id1 := b.Status().Sessions[0].ID
	testutil.WaitFor(t, 10*time.Second, "Start received", func() (bool, string) {
		return len(acctFor(srv, id1)) == 1, statuses(acctFor(srv, id1))
	})
	srv.Stop()
	hangUp(t, ctx, s, b.Box)
	r.readClient("NO CARRIER")
	time.Sleep(3 * time.Second) // a few failed tries
	srv.Restart()
	testutil.WaitFor(t, 30*time.Second, "Stop delivered after the server came back", func() (bool, string) {
		recs := acctFor(srv, id1)
		return statuses(recs) == "Start,Stop", statuses(recs)
	})
	if d, _ := strconv.Atoi(acctFor(srv, id1)[1]["Acct-Delay-Time"]); d < 2 {
		t.Errorf("Acct-Delay-Time %d: the delayed Stop should say it is late", d)
	}

	// 2: the server is away for a whole session and the box restarts.
	// dave is in FreeRADIUS only, so log in as a [users] user: accounting
	// covers every session, not only RADIUS-authenticated ones.
	srv.Stop()
	s, err = r.dialAs(ctx, "dial", "dial")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	id2 := b.Status().Sessions[0].ID
	testutil.WaitFor(t, 10*time.Second, "accounting shown as queued", func() (bool, string) {
		st := b.Status()
		return len(st.Sessions) == 1 && strings.Contains(st.Sessions[0].Acct, "queued"), fmt.Sprintf("%+v", st.Sessions)
	})
	hangUp(t, ctx, s, b.Box)
	r.readClient("NO CARRIER")
	b.Stop(t)
	srv.Restart()
	b2 := r.startBox()
	r.waitReady(b2)
	testutil.WaitFor(t, 30*time.Second, "records of the restart delivered", func() (bool, string) {
		recs := acctFor(srv, id2)
		return statuses(recs) == "Start,Stop", statuses(recs)
	})
	if a := acctFor(srv, id2)[0]["Acct-Authentic"]; a != "Local" {
		t.Errorf("Acct-Authentic %q for a [users] user, want Local", a)
	}
}

// TestRadiusWrongSecret (issue 14): a box whose secret differs from the
// server's fails the login and says why in its log.
func TestRadiusWrongSecret(t *testing.T) {
	ctx := slow(t, "dials through the box against FreeRADIUS", 2*time.Minute)
	srv, r, _ := radiusBox(t, "not-the-secret", "pap")
	if _, err := r.dialAs(ctx, "alice", "wonderland"); !errors.Is(err, ppp.ErrAuthFailed) {
		t.Errorf("dial: %v, want %v", err, ppp.ErrAuthFailed)
	}
	logs := r.logs.Tail(300)
	if !strings.Contains(logs, "wrong shared secret") {
		t.Errorf("the box's log does not name the shared secret as the likely cause:\n%s", logs)
	}
	if !strings.Contains(srv.Log(), "Shared secret is incorrect") {
		t.Errorf("FreeRADIUS did not see a bad secret:\n%s", srv.LogTail(30))
	}
}

// TestRadiusTwoBoxes (issue 14): two boxes share one FreeRADIUS, one user
// logged in on each; both sessions' records are there and tell the boxes
// and the sessions apart.
func TestRadiusTwoBoxes(t *testing.T) {
	ctx := slow(t, "dials through two boxes against FreeRADIUS", 3*time.Minute)
	srv := radiustest.Start(t, radiustest.Options{Users: radiusUsers})
	type boxUser struct {
		nas, user, pw string
		r             *rig
		b             *running
		s             *demo.Session
		id            string
	}
	boxes := []*boxUser{{nas: "box-a", user: "alice", pw: "wonderland"}, {nas: "box-b", user: "dave", pw: "diver"}}
	for _, x := range boxes {
		x.r = newRig(t)
		x.r.writeRadius(srv, srv.Secret(), x.nas, "mschap-v2")
		x.b = x.r.readyBox()
	}
	for _, x := range boxes {
		s, err := x.r.dialAs(ctx, x.user, x.pw)
		if err != nil {
			t.Fatalf("%s: dial: %v", x.nas, err)
		}
		x.s, x.id = s, x.b.Status().Sessions[0].ID
	}
	for _, x := range boxes {
		hangUp(t, ctx, x.s, x.b.Box)
	}
	if boxes[0].id == boxes[1].id {
		t.Fatalf("both sessions have Acct-Session-Id %s", boxes[0].id)
	}
	for _, x := range boxes {
		testutil.WaitFor(t, 15*time.Second, x.nas+": Start and Stop", func() (bool, string) {
			recs := acctFor(srv, x.id)
			return statuses(recs) == "Start,Stop", statuses(recs)
		})
		for _, rec := range acctFor(srv, x.id) {
			if rec["NAS-Identifier"] != x.nas || rec["User-Name"] != x.user {
				t.Errorf("%s record: NAS-Identifier %q User-Name %q", x.nas, rec["NAS-Identifier"], rec["User-Name"])
			}
		}
	}
}
