package modem

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/sim/hayes/hayestest"
)

// vrig is a virtual modem line on a pty; the test is the computer on the
// other end of the null-modem cable.
type vrig struct {
	*rig
	dials chan string
}

func newVirtualRig(t *testing.T, tweak func(*LineConfig), dial func(ctx context.Context, line, number string) (Route, error)) *vrig {
	t.Helper()
	dte, slave := hayestest.OpenPTY(t)
	r := &rig{t: t, bus: bus.New(nil), sessions: make(chan session, 8), done: make(chan struct{}), dte: dte, quitOn: []byte{0x04}}
	r.events = r.bus.SubscribeReliable("test", nil)
	t.Cleanup(r.events.Close)
	v := &vrig{rig: r, dials: make(chan string, 8)}
	cfg := DefaultLineConfig("ttyS0")
	cfg.Device = slave
	cfg.Kind = KindVirtual
	cfg.Lock = false
	cfg.FlowControl = "none"
	cfg.ConnectSpeed = 33600
	cfg.LoginPrompt = "isp!login: "
	if tweak != nil {
		tweak(&cfg)
	}
	opts := LineOptions{
		Bus:        r.bus,
		Log:        testLog(),
		Handler:    r.handler,
		CheckLogin: func(u, p string) bool { return u == "dial" && p == "dial" },
		Dial: func(ctx context.Context, line, number string) (Route, error) {
			v.dials <- number
			if dial != nil {
				return dial(ctx, line, number)
			}
			return Route{Service: ServicePPP}, nil
		},
	}
	var err error
	r.line, err = NewLine(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.line.t.dcdPoll = 20 * time.Millisecond
	r.start()
	r.waitState("idle")
	return v
}

// cmd sends an AT command line and waits for want.
func (v *vrig) cmd(line, want string) string {
	v.t.Helper()
	v.dte.Send(line + "\r")
	return v.dte.Expect(want)
}

// TestVirtualInitStrings: the init lines of Windows 95/98, Mac OS OT/PPP,
// chat and terminal programs (modem/at/testdata) all get OK from a virtual
// modem line, echo on as after power-up.
func TestVirtualInitStrings(t *testing.T) {
	v := newVirtualRig(t, nil, nil)
	f, err := os.Open("at/testdata/init-strings.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		got := v.cmd(line, "\r\n")
		// The echo, then the result (info text first for queries).
		for !strings.HasSuffix(got, "OK\r\n") && !strings.HasSuffix(got, "ERROR\r\n") {
			got += v.dte.Expect("\r\n")
		}
		if !strings.HasSuffix(got, "\r\nOK\r\n") {
			t.Errorf("%q -> %q, want OK", line, got)
		}
	}
}

// TestVirtualDialPPPAndEscape: ATDT through the dial plan, CONNECT 33600,
// an AutoPPP session; +++ with its guard time gives OK (the session stays
// up), ATO returns to data, +++ again and ATH hang up; the line is idle and
// answers AT.
func TestVirtualDialPPPAndEscape(t *testing.T) {
	v := newVirtualRig(t, nil, nil)
	v.cmd("ATE0S12=10", "OK\r\n") // 200 ms guard time
	v.dte.Chat("ATDT5551234\r", "\r\nCONNECT 33600/ARQ\r\n")
	if n := <-v.dials; n != "5551234" {
		t.Errorf("dial plan got %q", n)
	}
	v.waitState("connected")
	v.dte.Expect("isp!login: ")
	v.dte.Send(string(lcpFrame))
	s := v.nextSession()
	if string(s.first) != string(lcpFrame) || s.speed != 33600 {
		t.Errorf("session got %x at %d", s.first, s.speed)
	}
	v.dte.Expect("[ready]")
	time.Sleep(300 * time.Millisecond)
	v.dte.Chat("+++", "\r\nOK\r\n")
	v.cmd("ATO", "CONNECT 33600/ARQ\r\n")
	v.dte.Chat("echo", "echo")
	time.Sleep(300 * time.Millisecond)
	v.dte.Chat("+++", "\r\nOK\r\n")
	v.cmd("ATH", "\r\nOK\r\n")
	end := v.nextSession()
	if !errors.Is(end.readErr, ErrHungUp) {
		t.Errorf("session ended with %v, want ErrHungUp", end.readErr)
	}
	v.waitState("idle")
	v.cmd("AT", "\r\nOK\r\n")
	if st := v.line.Status(); st.Answered != 1 || st.LastConnect != "CONNECT 33600/ARQ" {
		t.Errorf("status %+v", st)
	}
}

// TestVirtualDTRDrop: the DTE drops DTR (B0 on the pty) during a call:
// the session ends, the line is back in command mode.
func TestVirtualDTRDrop(t *testing.T) {
	v := newVirtualRig(t, nil, nil)
	v.cmd("ATE0", "OK\r\n")
	v.dte.Chat(
		"ATDT5551234\r", "CONNECT 33600",
		"", "isp!login: ",
	)
	v.dte.Send(string(lcpFrame))
	v.nextSession()
	v.dte.SetDTR(false)
	end := v.nextSession()
	if !errors.Is(end.readErr, ErrDTRDrop) {
		t.Errorf("session ended with %v, want ErrDTRDrop", end.readErr)
	}
	v.waitState("idle")
	v.dte.SetDTR(true)
	v.cmd("AT", "\r\nOK\r\n")
}

// TestVirtualDialResults: the dial plan's answer becomes the X level's
// result: BUSY under X3/X4, NO CARRIER under X1; NO CARRIER when the
// session ends by itself; the login service gives the text login.
func TestVirtualDialResults(t *testing.T) {
	v := newVirtualRig(t, nil, func(ctx context.Context, line, number string) (Route, error) {
		switch number {
		case "1":
			return Route{}, ErrBusy
		case "2":
			return Route{}, errors.New("no route")
		case "3":
			return Route{Service: ServiceLogin}, nil
		}
		return Route{Service: ServicePPP}, nil
	})
	v.cmd("ATE0X4", "OK\r\n")
	v.cmd("ATD1", "\r\nBUSY\r\n")
	v.cmd("ATX1D1", "\r\nNO CARRIER\r\n")
	v.cmd("ATD2", "\r\nNO CARRIER\r\n")
	v.dte.Chat(
		"ATD3\r", "CONNECT",
		"", "isp!login: ",
		"dial\r", "Password: ",
	)
	v.dte.Send("dial\r")
	v.dte.Send("hello")
	s := v.nextSession()
	if s.user != "dial" {
		t.Errorf("user %q", s.user)
	}
	// The session ends by itself (as PPP after a Terminate): the DTE is
	// told NO CARRIER.
	v.dte.Chat(
		"bye", "bye",
		"\x04", "\x04",
		"", "\r\nNO CARRIER\r\n",
	)
	v.waitState("idle")
}

// TestVirtualDirectCable: Windows Direct Cable Connection: CLIENT gets
// CLIENTSERVER and PPP at once, no login.
func TestVirtualDirectCable(t *testing.T) {
	v := newVirtualRig(t, nil, nil)
	v.dte.Chat("CLIENT", "CLIENTSERVER")
	v.dte.Send(string(lcpFrame))
	s := v.nextSession()
	if string(s.first) != string(lcpFrame) {
		t.Errorf("first bytes %x", s.first)
	}
}

// TestVirtualBadInput: garbage and a 10 KB command line in command mode
// get ERROR or nothing, and the modem still answers.
func TestVirtualBadInput(t *testing.T) {
	v := newVirtualRig(t, nil, nil)
	v.cmd("ATE0", "OK\r\n")
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	for i := range junk {
		if junk[i] == 'A' || junk[i] == 'a' {
			junk[i] = '~'
		}
	}
	v.dte.Send(string(junk))
	v.cmd("AT"+strings.Repeat("X", 10240), "\r\nERROR\r\n")
	v.cmd("AT", "\r\nOK\r\n")
}
