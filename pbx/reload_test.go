package pbx

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/isp-box/isp-box/pbx/dialplan"
)

// Reload swaps the dial plan and peers; bindings stay.
func TestReloadKeepsBindings(t *testing.T) {
	box := startBox(t, testConfig(""), nil)
	u := registeredUA(t, box.Addr(), clientLine, "")
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
	r := u.inviteAuth(clientLine, "123", "reload@x")
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
	for _, tt := range []struct {
		name            string
		tag, callID, mf string
		vias            []string
		want            int
	}{
		{"Max-Forwards 0", "m1", "mf0@127.0.0.1", "0", nil, 483},
		{"loop", "m2", "loop@127.0.0.1", "69", []string{"SIP/2.0/UDP " + box.Addr().String() + ";branch=z9hG4bKours"}, 482},
	} {
		u.send(sipReq{method: sip.INVITE, uri: "sip:1@" + box.Addr().String(), via: u.addr(), vias: tt.vias,
			from: "<sip:pap2t-client@127.0.0.1>;tag=" + tt.tag, to: "<sip:1@127.0.0.1>", callID: tt.callID, cseq: 1,
			maxForwards: tt.mf}.String(), "")
		if r := u.final(3e9); r == nil || r.StatusCode != tt.want {
			t.Errorf("%s: %v", tt.name, r)
		}
	}
}

// call-limit: a peer at its limit gets 480 (chan_sip C 26990-27005).
func TestCallLimit(t *testing.T) {
	cfg := testConfig("")
	cfg.Peers[1].CallLimit = 1 // the client line
	box := startBox(t, cfg, nil)
	isp := registeredUA(t, box.Addr(), ispLine, "")
	cli := newRawUA(t, box.Addr())
	// the first call rings at the ISP line (which never answers)
	cli.sendInviteAuth(clientLine, "1", "lim1@x", "", testSDP)
	if m := isp.recv(5e9); m == nil {
		t.Fatal("the ISP line got no INVITE")
	}
	cli2 := newRawUA(t, box.Addr())
	r := cli2.inviteAuth(clientLine, "1", "lim2@x")
	if r == nil || r.StatusCode != 480 {
		t.Fatalf("over the limit: %v", r)
	}
	if c := box.Calls(); len(c) != 1 || c[0].State != "routing" && c[0].State != "ringing" {
		t.Errorf("calls: %+v", c)
	}
}
