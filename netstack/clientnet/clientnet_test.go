package clientnet_test

import (
	"context"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/isp-box/isp-box/netstack/clientnet"
)

// pair wires two clients back to back; the test's end closes them.
func pair(t *testing.T) (*clientnet.Client, *clientnet.Client) {
	t.Helper()
	a, b, err := clientnet.Pair(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1500)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestTCPAndPing(t *testing.T) {
	a, b := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := b.ListenTCP(netip.MustParseAddrPort("10.0.0.2:80"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, "over the link")
		c.Close()
	}()
	c, err := a.DialContext(ctx, "tcp", "10.0.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "over the link" {
		t.Fatalf("got %q, %v", got, err)
	}
	// The peer's stack answers the echo; our own matcher takes the reply.
	for i := 0; i < 3; i++ {
		if _, err := a.Ping(ctx, netip.MustParseAddr("10.0.0.2")); err != nil {
			t.Fatal(err)
		}
	}
	if a.Dropped() != 0 || b.Dropped() != 0 {
		t.Fatalf("drops %d %d", a.Dropped(), b.Dropped())
	}
}

func TestPingTimeout(t *testing.T) {
	c, err := clientnet.New(netip.MustParseAddr("10.0.0.1"), nil, 1500, func([]byte) {}) // a dead link
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Ping(ctx, netip.MustParseAddr("10.0.0.2")); err == nil {
		t.Fatal("ping over a dead link succeeded")
	}
}
