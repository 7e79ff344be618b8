package modem

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/isp-box/isp-box/modem/telnet/telnettest"
)

// bbs is a Telnet server on loopback that greets, then echoes every byte
// and keeps what it received.
func bbs(t *testing.T) (addr string, got <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = telnettest.BBS{
		Greeting: "Welcome to the BBS\r\n",
		Echo:     true,
		Until:    func(read []byte) bool { return len(read) >= 256 },
		Reply:    func([]byte) string { return "Goodbye\r\n" },
		Timeout:  20 * time.Second,
		Linger:   100 * time.Millisecond,
	}.Serve(ln)
	return ln.Addr().String(), got
}

// TestVirtualBBSBridge: ATDT of a number the dial plan sends to a Telnet
// BBS: CONNECT, the BBS's text reaches the caller, all 256 byte values go
// to the BBS and back unchanged through the Telnet bridge, and the BBS
// hanging up is NO CARRIER for the caller.
func TestVirtualBBSBridge(t *testing.T) {
	addr, got := bbs(t)
	v := newVirtualRig(t, nil, func(ctx context.Context, line, number string) (Route, error) {
		return Route{Service: ServiceTelnet, Target: addr}, nil
	})
	v.cmd("ATE0", "OK\r\n")
	v.dte.Send("ATDT5552323\r")
	v.dte.Expect("CONNECT 33600")
	v.dte.Expect("Welcome to the BBS\r\n")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	v.dte.Send(string(all))
	echo := v.dte.Expect(string(all[200:]))
	if !bytes.HasSuffix([]byte(echo), all) {
		t.Errorf("echo through the bridge % x", echo)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, all) {
			t.Errorf("BBS got % x", b)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("BBS got nothing")
	}
	v.dte.Expect("Goodbye\r\n")
	v.dte.Expect("\r\nNO CARRIER\r\n")
	v.waitState("idle")
}

// TestVirtualBBSUnreachable: a BBS that does not answer is NO CARRIER
// (no CONNECT first).
func TestVirtualBBSUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	v := newVirtualRig(t, nil, func(ctx context.Context, line, number string) (Route, error) {
		return Route{Service: ServiceTCP, Target: addr}, nil
	})
	v.cmd("ATE0", "OK\r\n")
	got := v.cmd("ATDT5552323", "NO CARRIER\r\n")
	if bytes.Contains([]byte(got), []byte("CONNECT")) {
		t.Errorf("got %q", got)
	}
	_ = io.EOF
}
