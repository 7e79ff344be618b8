package pbx

import (
	"testing"

	"github.com/isp-box/isp-box/pbx/dialplan"
)

// Reload swaps the dial plan and peers; bindings stay.
func TestReloadKeepsBindings(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := newRawUA(t, box.Addr())
	if r := u.registerAuth(clientLine, secret, ""); r.StatusCode != 200 {
		t.Fatal(r.StartLine())
	}
	cfg := testConfig("")
	cfg.Dialplan = append(cfg.Dialplan, dialplan.Line{Context: "default", Key: "exten", Value: "123,1,Busy()", File: "extensions.conf", Line: 2})
	extra := DefaultPeer("newpeer")
	cfg.Peers = append(cfg.Peers, extra)
	if err := box.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if p := peerByName(box.Server, clientLine); p.Port != u.port() {
		t.Fatalf("binding lost: %+v", p)
	}
	if p := peerByName(box.Server, "newpeer"); p.Name == "" {
		t.Fatal("new peer missing")
	}
	r := u.invite(clientLine, "123", 1, "reload@x", "")
	r = u.invite(clientLine, "123", 2, "reload@x", authz(r, clientLine, secret, "INVITE", "sip:123@"+box.Addr().String()))
	if r == nil || r.StatusCode != 486 {
		t.Fatalf("new dial plan: %v", r)
	}
	// a broken config is refused and the old one stays
	bad := testConfig("Dial(SIP/nosuchpeer)")
	if err := box.Reload(bad); err == nil {
		t.Fatal("Reload accepted Dial to a missing peer")
	}
}

// Max-Forwards 0 gets 483; an INVITE that already went through this box
// (our Via in it) gets 482.
func TestMaxForwardsAndLoop(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := newRawUA(t, box.Addr())
	u.send(`
INVITE sip:1@`+box.Addr().String()+` SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:`+itoa(u.port())+`;branch=`+branch()+`
From: <sip:pap2t-client@127.0.0.1>;tag=m1
To: <sip:1@127.0.0.1>
Call-ID: mf0@127.0.0.1
CSeq: 1 INVITE
Max-Forwards: 0`, "")
	if r := u.final(3e9); r == nil || r.StatusCode != 483 {
		t.Errorf("Max-Forwards 0: %v", r)
	}
	u.send(`
INVITE sip:1@`+box.Addr().String()+` SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:`+itoa(u.port())+`;branch=`+branch()+`
Via: SIP/2.0/UDP `+box.Addr().String()+`;branch=z9hG4bKours
From: <sip:pap2t-client@127.0.0.1>;tag=m2
To: <sip:1@127.0.0.1>
Call-ID: loop@127.0.0.1
CSeq: 1 INVITE
Max-Forwards: 69`, "")
	if r := u.final(3e9); r == nil || r.StatusCode != 482 {
		t.Errorf("loop: %v", r)
	}
}

// call-limit: a peer at its limit gets 480 (chan_sip C 26990-27005).
func TestCallLimit(t *testing.T) {
	cfg := testConfig("")
	cfg.Peers[1].CallLimit = 1 // the client line
	box := startBox(t, cfg, nil)
	isp := newRawUA(t, box.Addr())
	isp.registerAuth(ispLine, secret, "")
	cli := newRawUA(t, box.Addr())
	r := cli.invite(clientLine, "1", 1, "lim1@x", "")
	// the first call rings at the ISP line (which never answers)
	cli.send(inviteText(box.Addr().String(), cli.port(), clientLine, "1", 2, "lim1@x", authz(r, clientLine, secret, "INVITE", "sip:1@"+box.Addr().String())), testSDP)
	if m := isp.recv(5e9); m == nil {
		t.Fatal("the ISP line got no INVITE")
	}
	cli2 := newRawUA(t, box.Addr())
	r = cli2.invite(clientLine, "1", 1, "lim2@x", "")
	r = cli2.invite(clientLine, "1", 2, "lim2@x", authz(r, clientLine, secret, "INVITE", "sip:1@"+box.Addr().String()))
	if r == nil || r.StatusCode != 480 {
		t.Fatalf("over the limit: %v", r)
	}
	if c := box.Calls(); len(c) != 1 || c[0].State != "routing" && c[0].State != "ringing" {
		t.Errorf("calls: %+v", c)
	}
}
