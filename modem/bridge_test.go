package modem

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/isp-box/isp-box/modem/telnet"
)

// bbs is a Telnet server on loopback that greets, then echoes every byte
// and keeps what it received.
func bbs(t *testing.T) (addr string, got chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = make(chan []byte, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		c, err := telnet.Server(nc)
		if err != nil {
			return
		}
		c.Write([]byte("Welcome to the BBS\r\n"))
		var all []byte
		buf := make([]byte, 512)
		nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		for len(all) < 256 {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			c.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- all
		c.Write([]byte("Goodbye\r\n"))
		time.Sleep(100 * time.Millisecond)
	}()
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
