package telnet

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// serverPair returns a Server on one end of a pipe and the raw other end,
// with the server's opening offer already read.
func serverPair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	done := make(chan *Conn, 1)
	go func() {
		c, err := Server(a)
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	offer := make([]byte, 15)
	if _, err := io.ReadFull(b, offer); err != nil {
		t.Fatal(err)
	}
	want := []byte{IAC, WILL, OptEcho, IAC, WILL, OptSGA, IAC, DO, OptSGA, IAC, WILL, OptBinary, IAC, DO, OptBinary}
	if !bytes.Equal(offer, want) {
		t.Fatalf("offer % x, want % x", offer, want)
	}
	return <-done, b
}

// TestAllBytesBothWays: every byte value passes both ways, IAC doubled on
// the wire.
func TestAllBytesBothWays(t *testing.T) {
	c, peer := serverPair(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	var wire []byte
	for _, x := range all {
		wire = append(wire, x)
		if x == IAC {
			wire = append(wire, IAC)
		}
	}
	go peer.Write(wire)
	got := make([]byte, 256)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Errorf("server read % x", got)
	}
	go c.Write(all)
	back := make([]byte, len(wire))
	if _, err := io.ReadFull(peer, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, wire) {
		t.Errorf("wire % x", back)
	}
}

func TestNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		data []byte
		rep  []byte
	}{
		{"agreeing is not answered", []byte{IAC, DO, OptEcho, IAC, DO, OptBinary, IAC, WILL, OptBinary, 'x'}, []byte("x"), nil},
		{"unknown DO refused", []byte{IAC, DO, 24}, nil, []byte{IAC, WONT, 24}},
		{"unknown WILL refused", []byte{IAC, WILL, 31}, nil, []byte{IAC, DONT, 31}},
		{"DONT echo acknowledged once", []byte{IAC, DONT, OptEcho, IAC, DONT, OptEcho}, nil, []byte{IAC, WONT, OptEcho}},
		{"subnegotiation skipped", []byte{'a', IAC, SB, 31, 0, 80, IAC, IAC, 0, 24, IAC, SE, 'b'}, []byte("ab"), nil},
		{"NOP and GA skipped", []byte{IAC, 241, 'a', IAC, 249}, []byte("a"), nil},
		{"CR NUL after WONT BINARY", []byte{IAC, WONT, OptBinary, '\r', 0, '\n'}, []byte("\r\n"), []byte{IAC, DONT, OptBinary}},
		{"CR NUL kept in binary", []byte{'\r', 0}, []byte{'\r', 0}, nil},
		// A tty in cooked mode echoed the offer back, then the peer's raw
		// stream shows: from IAC 0x7d on, it is data.
		{"echoed offer, then raw", []byte{IAC, WILL, OptEcho, 'a', IAC, 0x7d, IAC, DO, 1}, []byte{'a', IAC, 0x7d, IAC, DO, 1}, []byte{IAC, DONT, OptEcho}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Conn{}
			c.us[OptEcho], c.us[OptSGA], c.us[OptBinary] = true, true, true
			c.him[OptBinary], c.him[OptSGA] = true, true
			data, rep, err := c.parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, tc.data) || !bytes.Equal(rep, tc.rep) {
				t.Errorf("data % x replies % x, want % x and % x", data, rep, tc.data, tc.rep)
			}
		})
	}
}

// TestRawPeer: a peer that says nothing in Telnet and sends IAC followed
// by a non-command (qemu's telnet=on chardev in client mode carrying
// pppd's frames) gets a raw stream both ways from then on.
func TestRawPeer(t *testing.T) {
	c, peer := serverPair(t)
	var after []byte
	c.OnRaw = func(b byte) { after = append(after, b) }
	// pppd's first LCP Configure-Request, then a byte pair that would be
	// a Telnet command (IAC DO) if the stream were parsed.
	frame := []byte{0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21, 0x7d, 0x21, 0x7e, 0xff, 0xfd, 0x01, 0xff, 0xff}
	go peer.Write(frame)
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, frame) {
		t.Errorf("server read % x, want % x", got, frame)
	}
	if !c.Raw() || !bytes.Equal(after, []byte{0x7d}) {
		t.Errorf("Raw %v, OnRaw calls % x", c.Raw(), after)
	}
	out := []byte{0x7e, 0xff, 0x03, 0xff, 0xff, 0x7e}
	go c.Write(out)
	back := make([]byte, len(out))
	if _, err := io.ReadFull(peer, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, out) {
		t.Errorf("peer read % x, want % x (not doubled)", back, out)
	}
}

// TestFlood: a peer that negotiates without end is cut off.
func TestFlood(t *testing.T) {
	c, peer := serverPair(t)
	go func() {
		// Replies to WILL 31 / WONT 31 pairs would go back: drain them.
		io.Copy(io.Discard, peer)
	}()
	go func() {
		for i := 0; i < MaxNegotiations; i++ {
			if _, err := peer.Write([]byte{IAC, WILL, 31, IAC, WONT, 31}); err != nil {
				return
			}
		}
	}()
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, ErrFlood) {
		t.Errorf("Read = %v, want ErrFlood", err)
	}
	// An endless subnegotiation too.
	c2 := &Conn{}
	if _, _, err := c2.parse(append([]byte{IAC, SB, 24}, make([]byte, maxSub+10)...)); !errors.Is(err, ErrFlood) {
		t.Errorf("long SB: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{IAC, DO, 1, 'a', IAC, IAC, IAC, SB, 1, IAC, SE})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &Conn{}
		data, rep, _ := c.parse(in)
		if len(data) > len(in) || len(rep) > 3*len(in) {
			t.Fatalf("%d data, %d replies for %d bytes", len(data), len(rep), len(in))
		}
	})
}
