package pbx

import (
	"net/netip"
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	n := newNonces()
	now := time.Unix(1_800_000_000, 0)
	src := netip.MustParseAddrPort("192.0.2.7:5060")
	x := n.issue(now, src)
	if st := n.check(x, src, now.Add(time.Second)); st != nonceFresh {
		t.Fatalf("fresh: %v", st)
	}
	// bound to where it was sent: another port or address gets nothing
	for _, other := range []string{"192.0.2.7:5061", "192.0.2.8:5060", "[2001:db8::1]:5060"} {
		if st := n.check(x, netip.MustParseAddrPort(other), now); st != nonceBad {
			t.Errorf("nonce for %s used from %s: %v", src, other, st)
		}
	}
	if !n.consume(x, now) || n.consume(x, now) {
		t.Fatal("a nonce must be consumable exactly once")
	}
	if st := n.check(x, src, now); st != nonceUsed {
		t.Errorf("used: %v", st)
	}
	y := n.issue(now, src)
	if st := n.check(y, src, now.Add(NonceTTL+time.Second)); st != nonceStale {
		t.Errorf("expired: %v", st)
	}
	if st := n.check(y[:len(y)-1]+"0", src, now); st != nonceBad && y[len(y)-1] != '0' {
		t.Errorf("forged: %v", st)
	}
	if st := newNonces().check(y, src, now); st != nonceBad {
		t.Errorf("another box's nonce: %v", st)
	}
}

// The used-nonce set forgets expired nonces as it goes: its size follows
// the rate of use, not the history, and each use costs O(1).
func TestNonceStoreBounded(t *testing.T) {
	n := newNonces()
	now := time.Unix(1_800_000_000, 0)
	src := netip.MustParseAddrPort("192.0.2.7:5060")
	for i := range 200_000 {
		at := now.Add(time.Duration(i) * time.Millisecond) // 1,000 uses a second
		if !n.consume(n.issue(at, src), at) {
			t.Fatalf("use %d refused", i)
		}
	}
	// 1,000/s kept for NonceTTL at most
	if c, limit := n.usedCount(), int(NonceTTL/time.Millisecond)+1; c > limit {
		t.Errorf("%d nonces remembered, want at most %d", c, limit)
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
