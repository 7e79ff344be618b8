package hayes

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/hayes/hayestest"
	"github.com/isp-box/isp-box/internal/testutil"
	"golang.org/x/sys/unix"
)

// callPair is two modems on an exchange: a dials from line 1, b answers
// at number 2 once its DTE has set it up with bInit (an AT command line).
func callPair(t *testing.T, bInit string) (x *Exchange, a, b *Modem, da, db *hayestest.DTE) {
	t.Helper()
	x = NewExchange()
	a = newModem(t, Options{Name: "a", Phone: x.Line("1")})
	b = newModem(t, Options{Name: "b"})
	x.Attach("2", b)
	da, db = hayestest.Open(t, a.Path()), hayestest.Open(t, b.Path())
	db.Chat(bInit+"\r", "OK\r\n")
	return x, a, b, da, db
}

func newModem(t *testing.T, o Options) *Modem {
	t.Helper()
	if o.Link == "" {
		o.Link = filepath.Join(t.TempDir(), "ttyEMU")
	}
	if o.RingInterval == 0 {
		o.RingInterval = 100 * time.Millisecond
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestCommandMode(t *testing.T) {
	m := newModem(t, Options{Name: "a"})
	d := hayestest.Open(t, m.Path())
	for _, step := range []struct {
		send, until string
		is, has     string // the reply up to until is this, or contains this ("": either is fine)
	}{
		{send: "AT\r", until: "OK\r\n", is: "AT\r\r\nOK\r\n"}, // echo then OK
		{send: "ATE0\r", until: "OK\r\n"},
		{send: "ATS7=45S7?\r", until: "OK\r\n", has: "045"},
		{send: "ATV0\r", until: "0\r"},
		{send: "ATQ0V1H0\r", until: "\r\nOK\r\n"},
		{send: "ATFOO\r", until: "\r\nERROR\r\n"},
		{send: "ATI3\r", until: "OK\r\n", has: "Sportster 28800"},
		{send: "A/", until: "Sportster 28800"},
		{until: "OK\r\n"},
		{send: "ATZ\r", until: "OK\r\n"},
	} {
		if step.send != "" {
			d.Send(step.send)
		}
		got := d.Expect(step.until)
		if (step.is != "" && got != step.is) || !strings.Contains(got, step.has) {
			t.Errorf("%q -> %q, want %q (containing %q)", step.send, got, step.is, step.has)
		}
	}
	if m.Reg(7) != 60 {
		t.Errorf("S7 after ATZ = %d, want 60", m.Reg(7))
	}
}

// TestCallBetweenModems: A dials B through the exchange; B is answered by
// its DTE after two RINGs; data passes both ways; +++ escapes; ATH hangs up
// and B reports NO CARRIER.
func TestCallBetweenModems(t *testing.T) {
	x := NewExchange()
	a := newModem(t, Options{Name: "a", Phone: x.Line("5550001")})
	b := newModem(t, Options{Name: "b", Phone: x.Line("5550002")})
	x.Attach("5550002", b)
	da, db := hayestest.Open(t, a.Path()), hayestest.Open(t, b.Path())
	da.Chat("ATE0\r", "OK\r\n")
	db.Chat("ATE0\r", "OK\r\n")

	da.Send("ATDT555-0002\r")
	db.Chat(
		"", "RING",
		"", "RING",
		"ATA\r", "CONNECT",
	)
	if got := db.Expect("\r\n"); got != " 28800/ARQ\r\n" {
		t.Fatalf("B: CONNECT%q, want CONNECT 28800/ARQ", got)
	}
	if got := da.Expect("CONNECT 28800/ARQ\r\n"); got != "\r\nCONNECT 28800/ARQ\r\n" {
		t.Fatalf("A: %q", got)
	}
	da.Send("hello B")
	db.Expect("hello B")
	db.Send("hello A")
	da.Expect("hello A")

	time.Sleep(1100 * time.Millisecond) // guard time S12=50: 1 s
	da.Chat("+++", "\r\nOK\r\n")
	db.Expect("+++") // the escape characters went out as data
	da.Chat("ATO\r", "CONNECT 28800/ARQ\r\n")
	da.Send("back online")
	db.Expect("back online")
	time.Sleep(1100 * time.Millisecond)
	da.Chat(
		"+++", "\r\nOK\r\n",
		"ATH0\r", "OK\r\n",
	)
	db.Expect("\r\nNO CARRIER\r\n")
	if a.Online() || b.Online() {
		t.Error("still online after ATH")
	}
}

func TestAutoAnswerAndFarHangup(t *testing.T) {
	x, _, b, da, db := callPair(t, "ATS0=2")
	da.Send("ATX4DT2\r")
	db.Expect("RING")
	db.Expect("RING")
	db.Expect("CONNECT 28800/ARQ\r\n")
	da.Expect("CONNECT 28800/ARQ\r\n")
	if b.Reg(1) != 2 {
		t.Errorf("S1 = %d, want 2", b.Reg(1))
	}
	b.DropCarrier()
	db.Expect("NO CARRIER\r\n")
	da.Expect("NO CARRIER\r\n")

	// A busy modem rejects a second caller: BUSY at X4.
	c := newModem(t, Options{Name: "c", Phone: x.Line("3")})
	dc := hayestest.Open(t, c.Path())
	da.Chat("ATDT2\r", "CONNECT")
	dc.Chat(
		"ATX4DT2\r", "BUSY\r\n",
		"ATX1DT9\r", "NO CARRIER\r\n", // nobody there
	)
}

// TestDTRDropViaB0: the DTE sets speed B0 (the POSIX DTR drop on a tty
// without modem-control lines); with &D2 the modem hangs up.
func TestDTRDropViaB0(t *testing.T) {
	_, _, _, da, db := callPair(t, "ATS0=1")
	da.Chat("ATD2\r", "CONNECT")
	db.Expect("CONNECT")
	setSpeed(t, db.File(), unix.B0)
	da.Expect("NO CARRIER")
	setSpeed(t, db.File(), unix.B38400)
	db.Chat("AT\r", "OK\r\n")
}

func setSpeed(t *testing.T, f *os.File, speed uint32) {
	t.Helper()
	err := control(f, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		tio.Cflag = tio.Cflag&^unix.CBAUD | speed
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVanishRestoreSilent(t *testing.T) {
	m := newModem(t, Options{Name: "a"})
	d := hayestest.Open(t, m.Path())
	d.Chat("AT\r", "OK")
	if err := m.Vanish(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.Path()); !os.IsNotExist(err) {
		t.Errorf("link still there after Vanish: %v", err)
	}
	d.File().SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := d.File().Read(make([]byte, 10)); err == nil {
		t.Error("read on a vanished modem succeeded")
	}
	if err := m.Restore(); err != nil {
		t.Fatal(err)
	}
	d2 := hayestest.Open(t, m.Path())
	d2.Chat("AT\r", "OK\r\n")
	m.GoSilent(true)
	d2.Send("AT\r")
	d2.File().SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := d2.File().Read(make([]byte, 10)); n != 0 {
		t.Error("a silent modem answered")
	}
	m.GoSilent(false)
	d2.Chat("AT\r", "OK\r\n")
}

// TestChat checks the emulator against chat(8) from Debian's ppp package:
// an AT client nobody here wrote. chat runs with stdin and stdout on the
// modem's tty, dials the second modem through the exchange and expects
// CONNECT.
func TestChat(t *testing.T) {
	chat := testutil.NeedProgram(t, "ppp", "chat")
	x := NewExchange()
	a := newModem(t, Options{Name: "a", Phone: x.Line("1")})
	b := newModem(t, Options{Name: "b"})
	x.Attach("88567682", b)
	db := hayestest.Open(t, b.Path())
	db.Chat("ATS0=2\r", "OK\r\n")

	tty, err := os.OpenFile(a.Path(), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	cmd := exec.Command(chat, "-v", "-s", "-t", "15",
		"ABORT", "BUSY", "ABORT", "NO CARRIER", "ABORT", "ERROR",
		"", "ATZ", "OK", "ATQ0V1E1X4", "OK", "ATDT88567682", "CONNECT", "")
	cmd.Stdin, cmd.Stdout = tty, tty
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chat: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "CONNECT") {
		t.Errorf("chat log lacks CONNECT:\n%s", stderr.String())
	}
	db.Expect("CONNECT 28800/ARQ")
	if !a.Online() {
		t.Error("modem a not online after chat")
	}
}

// TestNumericAndExtendedResults: V0 gives USR numeric codes (108 = CONNECT
// 28800/ARQ), &A3 the extended CONNECT text.
func TestNumericAndExtendedResults(t *testing.T) {
	_, _, _, da, db := callPair(t, "ATS0=1&A3")
	da.Send("ATE0V0\r")
	da.Expect("ATE0V0\r") // the echo (E0 takes effect after the line)
	if got := da.Expect("\r"); got != "0\r" {
		t.Errorf("numeric OK %q", got)
	}
	da.Send("ATDT2\r")
	if got := da.Expect("\r"); got != "108\r" {
		t.Errorf("numeric CONNECT %q, want 108", got)
	}
	db.Expect("CONNECT 28800/ARQ/V34/LAPM/V42BIS\r\n")
}

// TestConnectLine: both modems' CONNECT line per the answerer's X/&A
// settings and whether the carrier is error-controlled. A carrier without
// error control (a softmodem call: V.22bis, no V.42) never says ARQ.
func TestConnectLine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		init  string // the answerer's; the caller keeps the defaults (X1&A1)
		speed int
		noEC  bool
		a, b  string
	}{
		{"error control", "ATS0=1", 28800, false, "CONNECT 28800/ARQ", "CONNECT 28800/ARQ"},
		{"softmodem", "ATS0=1", 2400, true, "CONNECT 2400", "CONNECT 2400"},
		{"softmodem &A3", "ATS0=1X4&A3", 2400, true, "CONNECT 2400", "CONNECT 2400/NONE"},
		{"softmodem &A2 9600", "ATS0=1&A2", 9600, true, "CONNECT 9600", "CONNECT 9600/V32"},
		{"softmodem X0", "ATS0=1X0", 2400, true, "CONNECT 2400", "CONNECT"},
		{"error control X0", "ATS0=1X0", 2400, false, "CONNECT 2400/ARQ", "CONNECT/ARQ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, _, _, da, db := callPair(t, tc.init)
			x.Speed, x.NoErrorControl = tc.speed, tc.noEC
			da.Send("ATDT2\r")
			if got := da.Expect("CONNECT"); !strings.HasSuffix(got, "CONNECT") {
				t.Fatalf("caller: %q", got)
			}
			if got := "CONNECT" + da.Expect("\r\n"); got != tc.a+"\r\n" {
				t.Errorf("caller: %q, want %q", got, tc.a)
			}
			db.Expect("CONNECT")
			if got := "CONNECT" + db.Expect("\r\n"); got != tc.b+"\r\n" {
				t.Errorf("answerer: %q, want %q", got, tc.b)
			}
		})
	}
}

// TestNoGoroutineLeak: a modem that made a call, rang and vanished leaves
// no goroutine behind after Close.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	x := NewExchange()
	dir := t.TempDir()
	a, err := New(Options{Link: filepath.Join(dir, "a"), Phone: x.Line("1"), RingInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Link: filepath.Join(dir, "b"), RingInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	x.Attach("2", b)
	da, db := hayestest.Open(t, a.Path()), hayestest.Open(t, b.Path())
	db.Chat("ATS0=2\r", "OK")
	da.Chat("ATDT2\r", "CONNECT")
	da.Send("data")
	db.Expect("data")
	b.Vanish()
	da.Expect("NO CARRIER")
	b.Restore()
	da.File().Close()
	db.File().Close()
	a.Close()
	b.Close()
	testutil.GoroutinesBack(t, before, 5*time.Second)
}
