package pbx

import (
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	n := newNonces()
	now := time.Unix(1_800_000_000, 0)
	x := n.issue(now)
	if st := n.check(x, now.Add(time.Second)); st != nonceFresh {
		t.Fatalf("fresh: %v", st)
	}
	if !n.consume(x, now) || n.consume(x, now) {
		t.Fatal("a nonce must be consumable exactly once")
	}
	if st := n.check(x, now); st != nonceStale {
		t.Errorf("used: %v", st)
	}
	y := n.issue(now)
	if st := n.check(y, now.Add(NonceTTL+time.Second)); st != nonceStale {
		t.Errorf("expired: %v", st)
	}
	if st := n.check(y[:len(y)-1]+"0", now); st != nonceBad && y[len(y)-1] != '0' {
		t.Errorf("forged: %v", st)
	}
	if st := newNonces().check(y, now); st != nonceBad {
		t.Errorf("another box's nonce: %v", st)
	}
}

// RFC 2617 §3.5's example, and the no-qop form chan_sip uses.
func TestDigestResponse(t *testing.T) {
	c := credentials{Username: "Mufasa", Realm: "testrealm@host.com", Nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
		URI: "/dir/index.html", Qop: "auth", NC: "00000001", CNonce: "0a4f113b"}
	ha1 := md5hex("Mufasa:testrealm@host.com:Circle Of Life")
	if got := digestResponse(ha1, "GET", c); got != "6629fae49393a05397450978507c4ef1" {
		t.Errorf("qop=auth: %s", got)
	}
	c.Qop = ""
	want := md5hex(ha1 + ":" + c.Nonce + ":" + md5hex("GET:/dir/index.html"))
	if got := digestResponse(ha1, "GET", c); got != want {
		t.Errorf("no qop: %s", got)
	}
	got, err := parseCredentials(`Digest username="Mufasa",realm="testrealm@host.com", nonce="n", uri="/dir/index.html", response="6629FAE49393A05397450978507C4EF1", opaque="5ccc"`)
	if err != nil || got.Username != "Mufasa" || got.Response != "6629fae49393a05397450978507c4ef1" || got.Opaque != "5ccc" {
		t.Errorf("%+v %v", got, err)
	}
}

func TestACL(t *testing.T) {
	rules := []ACLRule{{Permit: false, Prefix: mustPrefix("0.0.0.0/0")}, {Permit: true, Prefix: mustPrefix("192.168.1.0/24")}}
	for a, want := range map[string]bool{"192.168.1.50": true, "10.0.0.1": false, "::ffff:192.168.1.7": true} {
		if got := aclAllows(rules, mustAddr(a)); got != want {
			t.Errorf("%s: %v", a, got)
		}
	}
	if !aclAllows(nil, mustAddr("10.0.0.1")) {
		t.Error("no rules must allow")
	}
}

func TestCauseMaps(t *testing.T) {
	for code, want := range map[int]int{480: 480, 486: 486, 503: 503, 404: 404, 603: 403, 408: 408, 488: 488} {
		if got, _ := cause2sip(sip2cause(code)); got != want {
			t.Errorf("%d -> cause %d -> %d, want %d", code, sip2cause(code), got, want)
		}
	}
	if got, _ := cause2sip(0); got != 603 {
		t.Errorf("cause 0: %d", got)
	}
}
