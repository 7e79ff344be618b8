package modem

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/modem/telnet"
)

// tcpRig is a TCP line on loopback with the echoing test handler.
type tcpRig struct {
	*rig
	tl *TCPLine
}

func newTCPRig(t *testing.T, tweak func(*LineConfig)) *tcpRig {
	t.Helper()
	r := &rig{t: t, bus: bus.New(nil), sessions: make(chan session, 256), done: make(chan struct{}), quitOn: []byte{0x04}}
	cfg := DefaultLineConfig("tcp0")
	cfg.Kind = KindTCP
	cfg.Listen = "127.0.0.1:0"
	cfg.LoginPrompt = "isp!login: "
	if tweak != nil {
		tweak(&cfg)
	}
	tl, err := NewTCPLine(cfg, LineOptions{Bus: r.bus, Log: testLog(), Handler: r.handler,
		CheckLogin: func(u, p string) bool { return u == "dial" && p == "dial" }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { defer close(r.done); tl.Run(ctx) }()
	t.Cleanup(r.stop)
	deadline := time.Now().Add(10 * time.Second)
	for tl.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("not listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &tcpRig{rig: r, tl: tl}
}

func (r *tcpRig) dial() net.Conn {
	r.t.Helper()
	c, err := net.Dial("tcp", r.tl.Addr().String())
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

func expectConn(t *testing.T, c net.Conn, want string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got []byte
	b := make([]byte, 4096)
	for !bytes.Contains(got, []byte(want)) {
		n, err := c.Read(b)
		got = append(got, b[:n]...)
		if err != nil {
			t.Fatalf("waiting for %q: %v; got %q", want, err, got)
		}
	}
	return string(got)
}

// TestTCPRawAutoPPP: a raw TCP connection starts in data mode: the login
// prompt, a PPP frame hands over to the session with the client's address
// as caller ID; `lines` shows the listener and the connection.
func TestTCPRawAutoPPP(t *testing.T) {
	r := newTCPRig(t, nil)
	c := r.dial()
	expectConn(t, c, "isp!login: ")
	c.Write(lcpFrame)
	s := r.nextSession()
	if !bytes.Equal(s.first, lcpFrame) {
		t.Errorf("first % x", s.first)
	}
	expectConn(t, c, "[ready]")
	st := r.tl.Status()
	if len(st) != 2 || st[0].State != "idle" || st[1].State != "connected" || st[1].CallerID != "127.0.0.1" {
		t.Errorf("status %+v", st)
	}
	c.Close()
	end := r.nextSession()
	if end.readErr == nil {
		t.Error("session did not end with the connection")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r.tl.Status()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("connection line left: %+v", r.tl.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTCPTelnetAllBytes: through Telnet (IAC doubled both ways) all 256
// byte values pass to the session and back unchanged.
func TestTCPTelnetAllBytes(t *testing.T) {
	r := newTCPRig(t, func(c *LineConfig) { c.Telnet = true })
	c := r.dial()
	expectConn(t, c, "isp!login: ")
	c.Write(iacDouble(lcpFrame))
	r.nextSession()
	expectConn(t, c, "[ready]")
	var wire []byte
	for i := 0; i < 256; i++ {
		wire = append(wire, byte(i))
		if i == telnet.IAC {
			wire = append(wire, telnet.IAC)
		}
	}
	c.Write(wire)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(wire))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wire) {
		t.Errorf("echo through telnet:\n% x\nwant\n% x", got, wire)
	}
}

// TestTCPTelnetRawClient: a client of a Telnet line that speaks no Telnet
// (qemu's telnet=on chardev in client mode, which sends pppd's frames as
// they are) still gets PPP: its first frame's IAC followed by 0x7d turns
// the connection raw, and all 256 byte values pass both ways undoubled.
func TestTCPTelnetRawClient(t *testing.T) {
	r := newTCPRig(t, func(c *LineConfig) { c.Telnet = true })
	c := r.dial()
	expectConn(t, c, "isp!login: ")
	c.Write(lcpFrame)
	r.nextSession()
	expectConn(t, c, "[ready]")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	c.Write(all)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(all))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Errorf("echo through a raw client of a telnet line:\n% x\nwant\n% x", got, all)
	}
}

// TestTCPEchoingClient: a client whose tty echoed the login prompt back
// (pppd opening an emulated serial port still in cooked mode) has given a
// "name" by the time its first LCP frame comes: AutoPPP takes the frame at
// Password: too.
func TestTCPEchoingClient(t *testing.T) {
	r := newTCPRig(t, nil)
	c := r.dial()
	expectConn(t, c, "isp!login: ")
	c.Write([]byte("\r\nisp!login: \r\n"))
	expectConn(t, c, "Password: ")
	c.Write(lcpFrame)
	r.nextSession()
	expectConn(t, c, "[ready]")
}

// TestTCPLimits: max-connections, the per-source rate and deny refuse a
// connection (closed at once) with a reason in the status and the log.
func TestTCPLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*LineConfig)
		ok    int // connections that get the prompt before one is refused
		why   string
	}{
		{"max-connections", func(c *LineConfig) { c.MaxConns = 2 }, 2, "max-connections 2"},
		{"rate-limit", func(c *LineConfig) { c.RatePerMin = 1 }, 1, "rate-limit 1"},
		{"deny", func(c *LineConfig) { c.Deny = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} }, 0, "not permitted"},
		{"permit elsewhere", func(c *LineConfig) { c.Permit = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }, 0, "not permitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTCPRig(t, tc.tweak)
			for i := 0; i < tc.ok; i++ {
				expectConn(t, r.dial(), "isp!login: ")
			}
			c := r.dial()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := c.Read(make([]byte, 64)); err == nil || n > 0 {
				t.Fatalf("refused connection read %d, %v", n, err)
			}
			st := r.tl.Status()[0]
			if st.Errors != 1 || !strings.Contains(st.LastError, tc.why) {
				t.Errorf("listener status %+v, want one refusal for %q", st, tc.why)
			}
		})
	}
}

// TestTCPSilentClient: a client that connects and sends nothing is cut
// off after idle-timeout.
func TestTCPSilentClient(t *testing.T) {
	r := newTCPRig(t, func(c *LineConfig) { c.IdleTimeout = 300 * time.Millisecond })
	c := r.dial()
	expectConn(t, c, "isp!login: ")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("connection not closed by the box: %v", err)
	}
}

// TestTCPTelnetFlood: endless option negotiation ends the connection with
// a counted error; the listener keeps serving.
func TestTCPTelnetFlood(t *testing.T) {
	r := newTCPRig(t, func(c *LineConfig) { c.Telnet = true })
	events := r.events()
	c := r.dial()
	go io.Copy(io.Discard, c)
	for i := 0; i < telnet.MaxNegotiations; i++ {
		if _, err := c.Write([]byte{telnet.IAC, telnet.WILL, 31, telnet.IAC, telnet.WONT, 31}); err != nil {
			break
		}
	}
	waitEvent(t, events, func(ev bus.ModemError) bool { return strings.Contains(ev.Err, "flood") })
	expectConn(t, r.dial(), "isp!login: ")
}

func (r *tcpRig) events() *bus.Sub {
	if r.rig.events == nil {
		r.rig.events = r.bus.SubscribeReliable("test", nil)
		r.t.Cleanup(r.rig.events.Close)
	}
	return r.rig.events
}

// TestTCPDialogue: with dialogue, a connection is a virtual modem in
// command mode (an emulator's modem): AT, ATDT, CONNECT, PPP.
func TestTCPDialogue(t *testing.T) {
	r := newTCPRig(t, func(c *LineConfig) { c.Dialogue = true; c.Telnet = true; c.ConnectSpeed = 28800 })
	c := r.dial()
	c.Write([]byte("ATE0\r"))
	expectConn(t, c, "OK\r\n")
	c.Write([]byte("ATDT5551234\r"))
	expectConn(t, c, "CONNECT 28800")
	c.Write(iacDouble(lcpFrame))
	s := r.nextSession()
	if !bytes.Equal(s.first, lcpFrame) {
		t.Errorf("first % x", s.first)
	}
}

// TestTCPHundred: 100 connections at once, each a line and a session of
// its own.
func TestTCPHundred(t *testing.T) {
	r := newTCPRig(t, nil)
	conns := make([]net.Conn, 100)
	for i := range conns {
		conns[i] = r.dial()
	}
	for _, c := range conns {
		expectConn(t, c, "isp!login: ")
		c.Write(lcpFrame)
	}
	for range conns {
		r.nextSession()
	}
	if st := r.tl.Status(); len(st) != 101 {
		t.Errorf("%d status rows, want 101", len(st))
	}
}

// iacDouble is what a Telnet client sends for b.
func iacDouble(b []byte) []byte {
	var out []byte
	for _, x := range b {
		out = append(out, x)
		if x == telnet.IAC {
			out = append(out, telnet.IAC)
		}
	}
	return out
}
