package at

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testProfile = Profile{Ident: map[int]string{0: "isp-box", 3: "isp-box virtual modem"}}

// TestInitStrings: every init line of testdata/init-strings.txt (Windows
// 95/98 Unimodem, Mac OS OT/PPP, chat, terminal programs) gets OK, from a
// fresh engine and after all the lines before it.
func TestInitStrings(t *testing.T) {
	f, err := os.Open("testdata/init-strings.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seq := NewEngine(testProfile)
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		for _, e := range []*Engine{NewEngine(testProfile), seq} {
			out, acts, rest := e.Feed([]byte(line + "\r"))
			if !bytes.HasSuffix(out, []byte("\r\nOK\r\n")) {
				t.Errorf("%q -> %q, want OK", line, out)
			}
			if len(acts) != 0 && !(len(acts) == 1 && acts[0].Kind == ActHangup) {
				t.Errorf("%q -> actions %v", line, acts)
			}
			if len(rest) != 0 {
				t.Errorf("%q left %q", line, rest)
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d init lines read", n)
	}
}

func TestEngineDialogue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup string // fed first, output ignored
		in    string
		out   string
		acts  []Action
		rest  string
	}{
		{name: "echo and OK", in: "AT\r", out: "AT\r\r\nOK\r\n"},
		{name: "no echo", setup: "ATE0\r", in: "AT\r", out: "\r\nOK\r\n"},
		{name: "numeric", setup: "ATE0V0\r", in: "AT\r", out: "0\r"},
		{name: "quiet", setup: "ATE0Q1\r", in: "AT\r", out: ""},
		{name: "error", setup: "ATE0\r", in: "ATJ\r", out: "\r\nERROR\r\n"},
		{name: "lower case and backspace", setup: "ATE0\r", in: "at&kx\x083\r", out: "\r\nOK\r\n"},
		{name: "register query", setup: "ATE0\r", in: "ATS7=45S7?\r", out: "\r\n045\r\n\r\nOK\r\n"},
		{name: "dial", setup: "ATE0\r", in: "ATDT 555-1234\rX", out: "",
			acts: []Action{{Kind: ActDial, Number: "5551234", Raw: "T 555-1234"}}, rest: "X"},
		{name: "redial last", setup: "ATE0\rATDT5551234\r", in: "ATDL\r", out: "",
			acts: []Action{{Kind: ActDial, Number: "5551234", Raw: "L"}}},
		{name: "hang up then OK", setup: "ATE0\r", in: "ATH0\r", out: "\r\nOK\r\n", acts: []Action{{Kind: ActHangup}}},
		{name: "reset", setup: "ATE0\r", in: "ATZ\r", out: "\r\nOK\r\n", acts: []Action{{Kind: ActHangup}}},
		{name: "online", setup: "ATE0\r", in: "ATO\rdata", out: "", acts: []Action{{Kind: ActOnline}}, rest: "data"},
		{name: "answer", setup: "ATE0\r", in: "ATA\r", out: "", acts: []Action{{Kind: ActAnswer}}},
		{name: "repeat", setup: "ATE0\rATI3\r", in: "A/", out: "\r\nisp-box virtual modem\r\n\r\nOK\r\n"},
		{name: "direct cable", setup: "ATE0\r", in: "CLIENT", out: "", acts: []Action{{Kind: ActClient}}},
		{name: "overlong line", setup: "ATE0\r", in: "AT" + strings.Repeat("M0", 10000) + "\r", out: "\r\nERROR\r\n"},
		{name: "garbage outside a line", setup: "ATE0\r", in: "\x00\xff junk ~}#\r\n", out: ""},
		{name: "fax refused", setup: "ATE0\r", in: "AT+FCLASS=1\r", out: "\r\nERROR\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(testProfile)
			e.Feed([]byte(tc.setup))
			out, acts, rest := e.Feed([]byte(tc.in))
			if string(out) != tc.out {
				t.Errorf("out %q, want %q", out, tc.out)
			}
			if len(acts) != len(tc.acts) {
				t.Fatalf("actions %+v, want %+v", acts, tc.acts)
			}
			for i := range acts {
				if acts[i] != tc.acts[i] {
					t.Errorf("action %d %+v, want %+v", i, acts[i], tc.acts[i])
				}
			}
			if string(rest) != tc.rest {
				t.Errorf("rest %q, want %q", rest, tc.rest)
			}
		})
	}
}

// TestConnectText: the CONNECT line per X, &A and whether the call is
// under error control (USR Courier V.34 manual, &A0..&A3).
func TestConnectText(t *testing.T) {
	for _, tc := range []struct {
		set   string
		speed int
		ec    bool
		want  string
	}{
		{"X0", 2400, true, "CONNECT/ARQ"},
		{"X0", 2400, false, "CONNECT"},
		{"X0&A0", 2400, true, "CONNECT"},
		{"X1&A0", 28800, true, "CONNECT 28800"},
		{"X1&A1", 28800, true, "CONNECT 28800/ARQ"},
		{"X1&A1", 2400, false, "CONNECT 2400"},
		{"X4&A1", 1200, false, "CONNECT 1200"},
		{"X4&A2", 28800, true, "CONNECT 28800/ARQ/V34"},
		{"X4&A2", 9600, false, "CONNECT 9600/V32"},
		{"X4&A2", 2400, false, "CONNECT 2400"},
		{"X4&A3", 28800, true, "CONNECT 28800/ARQ/V34/LAPM/V42BIS"},
		{"X4&A3", 2400, true, "CONNECT 2400/ARQ/LAPM/V42BIS"},
		{"X4&A3", 2400, false, "CONNECT 2400/NONE"},
		{"X4&A3", 14400, false, "CONNECT 14400/V32/NONE"},
	} {
		e := NewEngine(testProfile)
		e.Feed([]byte("AT" + tc.set + "\r"))
		if got := e.ConnectTextEC(tc.speed, tc.ec); got != tc.want {
			t.Errorf("AT%s, %d bit/s, error control %v: %q, want %q", tc.set, tc.speed, tc.ec, got, tc.want)
		}
		if tc.ec {
			if got := e.ConnectText(tc.speed); got != tc.want {
				t.Errorf("AT%s, %d bit/s: ConnectText %q, want %q", tc.set, tc.speed, got, tc.want)
			}
		}
	}
}

func TestResultsAndConnect(t *testing.T) {
	e := NewEngine(testProfile)
	if got := e.ConnectText(33600); got != "CONNECT 33600/ARQ" {
		t.Errorf("connect %q", got)
	}
	e.Feed([]byte("ATE0V0X4&A3\r"))
	n, _ := USRNumeric("CONNECT 28800/ARQ")
	if got, want := string(e.Result(e.ConnectText(28800))), strconv.Itoa(n)+"\r"; got != want || n <= 1 {
		t.Errorf("numeric CONNECT 28800/ARQ/V34/LAPM/V42BIS = %q, want %q (the &A1 code)", got, want)
	}
	if got := e.FailureText(FailBusy); got != "BUSY" {
		t.Errorf("X4 busy = %q", got)
	}
	e.Feed([]byte("ATX1\r"))
	if got := e.FailureText(FailBusy); got != "NO CARRIER" {
		t.Errorf("X1 busy = %q", got)
	}
}

func TestEscape(t *testing.T) {
	e := NewEngine(testProfile)
	t0 := time.Unix(1000, 0)
	var s Escape
	s.Reset(t0)
	if s.Data([]byte("+++"), t0.Add(500*time.Millisecond), e) {
		t.Error("escape without the guard time before it")
	}
	s.Reset(t0)
	if !s.Data([]byte("+++"), t0.Add(1100*time.Millisecond), e) {
		t.Error("+++ after a second of silence not armed")
	}
	if s.Data([]byte("x"), t0.Add(1200*time.Millisecond), e) || s.Armed() {
		t.Error("data after +++ did not disarm")
	}
	// PPP data containing +++ in a stream is not an escape.
	s.Reset(t0)
	if s.Data([]byte("ab+++"), t0.Add(2*time.Second), e) {
		t.Error("+++ inside data armed the escape")
	}
}

func FuzzEngineFeed(f *testing.F) {
	f.Add([]byte("AT&FE0V1&C1&D2S0=0\rATDT5551234\r"))
	f.Add([]byte("A/ATS999=1\rAT+++CLIENT\r"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e := NewEngine(testProfile)
		for len(b) > 0 {
			out, _, rest := e.Feed(b)
			if len(out) > 2*len(b)+4096 {
				t.Fatalf("%d bytes out for %d in", len(out), len(b))
			}
			if len(rest) >= len(b) {
				t.Fatal("no progress")
			}
			b = rest
		}
	})
}
