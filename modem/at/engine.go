package at

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Engine is the command side of a Hayes modem, the DCE's half of the AT
// dialogue: it assembles command lines from the bytes a DTE types (the "AT"
// prefix, S3 end of line, S5 backspace, "A/" repeat), echoes them (E), runs
// the commands that only change settings (E Q V X &A &C &D &F Z S-registers,
// identification, the speaker/flow-control/compression commands dial-up
// software sends and an emulated link ignores) and formats result codes per
// Q and V (USR 5631: verbose "\r\n<text>\r\n", numeric "<n>\r").
//
// What needs a line or a call (dial, answer, hang up, go back online) is an
// Action for the host: the emulated modem of the simulator and the box's
// virtual modem line are both hosts of one Engine, so they answer the same
// grammar by construction. An Engine does no I/O and is not safe for
// concurrent use; its host owns it.
type Engine struct {
	Profile Profile

	Regs    [256]int
	Echo    bool // E
	Quiet   bool // Q
	Verbose bool // V
	X       int  // X: result subset 0..4
	ARQ     int  // &A: CONNECT detail 0..3
	AmpC    int  // &C: DCD follows carrier (1) or always on (0)
	AmpD    int  // &D: what DTR low does: 0 ignore, 1 online-command, 2 hang up, 3 hang up and reset
	CID     bool // #CID / +VCID: caller ID between the first and second RING

	line     []byte // the command being typed, after "AT"
	inLine   bool
	sawA     bool
	overflow bool   // the line passed MaxLine: answered with ERROR
	lastCmd  string // for A/
	recent   []byte // the last bytes typed outside a command line
	dropped  int    // bytes of overlong lines dropped
	lastDial string // for ATDL
}

// MaxLine is the longest command line accepted (after "AT"); longer lines
// get ERROR, as a real modem's 40..255-byte buffer does. USR modems take 255.
const MaxLine = 255

// Profile is what identifies a modem model: its ATIn answers. Engine
// composes I4 (the settings) itself.
type Profile struct {
	Ident map[int]string // ATIn text; a missing n answers ERROR
}

// ActionKind is what the host must do for a command.
type ActionKind int

// Actions.
const (
	ActDial   ActionKind = iota + 1 // ATD: dial Number; the result is the host's
	ActAnswer                       // ATA: answer; the result is the host's
	ActOnline                       // ATO: back to data mode; the result is the host's
	ActHangup                       // ATH, ATZ: drop the call (the result follows from the Engine)
	ActClient                       // "CLIENT" typed: Windows direct cable; the host answers "CLIENTSERVER"
)

// Action is one thing a command line asks of the host.
type Action struct {
	Kind   ActionKind
	Number string // ActDial: the digits to dial (modifiers removed; L expanded)
	Raw    string // ActDial: the dial string as typed
}

// Final reports whether the action's result is the host's to send
// (CONNECT, BUSY, NO CARRIER...) rather than the Engine's OK.
func (a Action) Final() bool {
	return a.Kind == ActDial || a.Kind == ActAnswer || a.Kind == ActOnline
}

// NewEngine returns an Engine with the factory profile loaded.
func NewEngine(p Profile) *Engine {
	e := &Engine{Profile: p}
	e.Factory()
	return e
}

// Factory loads the factory settings (&F; ATZ loads the same: there is no
// NVRAM). The defaults are a USR Sportster's: echo and verbose on, X1,
// &A1, &C1, &D2, S7=60 s, S12=50 (1 s guard time).
func (e *Engine) Factory() {
	e.Regs = [256]int{}
	e.Regs[2], e.Regs[3], e.Regs[4], e.Regs[5] = '+', '\r', '\n', 8
	e.Regs[6], e.Regs[7], e.Regs[8], e.Regs[10], e.Regs[12] = 2, 60, 2, 7, 50
	e.Echo, e.Quiet, e.Verbose = true, false, true
	e.X, e.ARQ, e.AmpC, e.AmpD = 1, 1, 1, 2
	e.CID = false
}

// Reset forgets a half-typed command line (after a hang-up, a call).
func (e *Engine) Reset() {
	e.inLine, e.sawA, e.line, e.overflow = false, false, nil, false
}

// Dropped returns and clears the count of bytes of overlong command lines
// that were thrown away, for the host to log once per line.
func (e *Engine) Dropped() int {
	n := e.dropped
	e.dropped = 0
	return n
}

// Feed processes bytes typed in command mode. out is what goes back to the
// DTE: echo and results, in order. acts are the actions of the command
// lines completed, in order. When an action is Final (dial, answer,
// online), Feed stops right after its command line and returns the bytes
// not yet processed in rest: while a dial or an answer is in progress, any
// character aborts it (the host's business), and after ATO the bytes are
// data.
func (e *Engine) Feed(b []byte) (out []byte, acts []Action, rest []byte) {
	for i, c := range b {
		o, a := e.feedByte(c)
		out = append(out, o...)
		acts = append(acts, a...)
		if len(a) > 0 && a[len(a)-1].Final() {
			return out, acts, b[i+1:]
		}
	}
	return out, acts, nil
}

func (e *Engine) feedByte(c byte) (out []byte, acts []Action) {
	if e.Echo {
		out = append(out, c)
	}
	if !e.inLine {
		e.recent = append(e.recent, c)
		if len(e.recent) > len("CLIENT") {
			e.recent = e.recent[len(e.recent)-len("CLIENT"):]
		}
		if string(e.recent) == "CLIENT" {
			e.recent = e.recent[:0]
			return out, []Action{{Kind: ActClient}}
		}
		switch {
		case c == 'A' || c == 'a':
			e.sawA = true
		case e.sawA && (c == 'T' || c == 't'):
			e.inLine, e.sawA, e.line, e.overflow = true, false, e.line[:0], false
		case e.sawA && c == '/':
			e.sawA = false
			if e.Echo {
				out = append(out, '\r')
			}
			o, a := e.Execute(e.lastCmd)
			return append(out, o...), a
		default:
			e.sawA = false
		}
		return out, nil
	}
	switch {
	case int(c) == e.Regs[3]:
		e.inLine = false
		if e.overflow {
			e.overflow = false
			return append(out, e.Result("ERROR")...), nil
		}
		cmd := string(e.line)
		e.line = e.line[:0]
		e.lastCmd = cmd
		o, a := e.Execute(cmd)
		return append(out, o...), a
	case int(c) == e.Regs[5] || c == 0x7f:
		if len(e.line) > 0 {
			e.line = e.line[:len(e.line)-1]
		}
	case c == '\n':
	default:
		if len(e.line) < MaxLine {
			e.line = append(e.line, c)
		} else {
			e.overflow = true
			e.dropped++
		}
	}
	return out, nil
}

// Execute runs a command line (the text after AT) and returns what it
// sends and asks for.
func (e *Engine) Execute(line string) (out []byte, acts []Action) {
	cmds, err := ParseCommandLine(line)
	if err != nil {
		return e.Result("ERROR"), nil
	}
	for _, c := range cmds {
		o, act, res := e.command(c)
		out = append(out, o...)
		if act != nil {
			acts = append(acts, *act)
			if act.Final() {
				return out, acts
			}
		}
		if res == "ERROR" {
			return append(out, e.Result("ERROR")...), acts
		}
	}
	return append(out, e.Result("OK")...), acts
}

// command runs one command: o is text it sends before the line's result,
// act an action for the host, res "ERROR" when it failed.
func (e *Engine) command(c Command) (o []byte, act *Action, res string) {
	switch c.Name {
	case "A":
		return nil, &Action{Kind: ActAnswer}, ""
	case "D":
		return nil, &Action{Kind: ActDial, Number: e.dialNumber(c.Dial), Raw: c.Dial}, ""
	case "O":
		return nil, &Action{Kind: ActOnline}, ""
	case "H":
		if c.Num == 0 {
			return nil, &Action{Kind: ActHangup}, ""
		}
		// H1 (off hook, no call) has nothing to do on an emulated line.
	case "Z":
		e.Factory()
		return nil, &Action{Kind: ActHangup}, ""
	case "E":
		e.Echo = c.Num == 1
	case "Q":
		e.Quiet = c.Num == 1
	case "V":
		e.Verbose = c.Num == 1
	case "X":
		if c.Num > 4 {
			return nil, nil, "ERROR"
		}
		e.X = c.Num
	case "I":
		text, ok := e.identify(c.Num)
		if !ok {
			return nil, nil, "ERROR"
		}
		if text != "" {
			o = []byte("\r\n" + text + "\r\n")
		}
	case "S":
		switch {
		case c.Reg > 255:
			return nil, nil, "ERROR"
		case c.Query:
			o = []byte(fmt.Sprintf("\r\n%03d\r\n", e.Regs[c.Reg]))
		case c.Set:
			if c.Num > 255 {
				return nil, nil, "ERROR"
			}
			e.Regs[c.Reg] = c.Num
		}
	case "#CID", "+VCID":
		if c.Query {
			o = []byte(fmt.Sprintf("\r\n%d\r\n", b2i(e.CID)))
		} else {
			e.CID = c.Num == 1
		}
	case "+FCLASS":
		if c.Set && c.Query {
			o = []byte("\r\n0\r\n")
		} else if c.Set && c.HasNum && c.Num != 0 {
			return nil, nil, "ERROR" // data only: no fax, no voice
		} else if c.Query {
			o = []byte("\r\n0\r\n")
		}
	case "+GMI", "+GMM", "+GMR", "+GCAP":
		if !c.Query && c.Set {
			return nil, nil, "ERROR"
		}
		text := map[string]string{"+GMI": "isp-box", "+GMM": e.Profile.Ident[3], "+GMR": e.Profile.Ident[0], "+GCAP": "+GCAP: +FCLASS"}[c.Name]
		o = []byte("\r\n" + text + "\r\n")
	case "&F":
		e.Factory()
	case "&C":
		e.AmpC = c.Num
	case "&D":
		if c.Num > 3 {
			return nil, nil, "ERROR"
		}
		e.AmpD = c.Num
	case "&A":
		if c.Num > 3 {
			return nil, nil, "ERROR"
		}
		e.ARQ = c.Num
	case "B", "C", "G", "K", "L", "M", "N", "P", "R", "T", "W", "Y",
		"+MS", "+ES", "+DS", "+IFC", "+IPR", "+ICF", "+GCI", "+ETBM", "+DR", "+ER", "+A8E":
		// Accepted and stored nowhere: speaker (L M), pulse/tone (P T),
		// modulation and error control (B N +MS +ES), compression (+DS),
		// flow control (+IFC): none of it changes an emulated link.
	default:
		if len(c.Name) == 2 && (c.Name[0] == '&' || c.Name[0] == '\\' || c.Name[0] == '%' || c.Name[0] == '*') {
			// &K3, &B1, \N3, %C1, \V1, \Q3... from modem INF files and
			// CCL scripts: flow control, DTE speed lock, error control
			// and compression settings, all moot on an emulated link.
			return nil, nil, ""
		}
		return nil, nil, "ERROR"
	}
	return o, nil, ""
}

// dialNumber strips a dial string down to what is dialled: digits, * and
// #; L redials the last number; T P W , ! @ ; and punctuation are dial
// modifiers. A dial string with letters other than modifiers (a host name
// for a WiFi-modem-style "ATDT bbs.example.org") keeps its text.
func (e *Engine) dialNumber(s string) string {
	var num strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r >= '0' && r <= '9', r == '*', r == '#':
			num.WriteRune(r)
		case r == 'L':
			num.Reset()
			num.WriteString(e.lastDial)
		}
	}
	e.lastDial = num.String()
	return e.lastDial
}

// identify answers ATIn from the profile; I4 reports the settings.
func (e *Engine) identify(n int) (string, bool) {
	if n == 4 {
		name := e.Profile.Ident[3]
		if name == "" {
			name = "isp-box"
		}
		return fmt.Sprintf("%s Settings...\r\n\r\n   B0  E%d  F1  M1  Q%d  V%d  X%d\r\n   &A%d  &C%d  &D%d  S00=%03d  S07=%03d  S12=%03d",
			name, b2i(e.Echo), b2i(e.Quiet), b2i(e.Verbose), e.X, e.ARQ, e.AmpC, e.AmpD, e.Regs[0], e.Regs[7], e.Regs[12]), true
	}
	text, ok := e.Profile.Ident[n]
	if text == "OK" {
		return "", true
	}
	return text, ok
}

// Result formats a result code per Q and V: "\r\nTEXT\r\n", or the USR
// numeric code and CR. Extended CONNECT texts without a code of their own
// take the code of their &A1 form.
func (e *Engine) Result(text string) []byte {
	if e.Quiet {
		return nil
	}
	if e.Verbose {
		return []byte("\r\n" + text + "\r\n")
	}
	n, ok := USRNumeric(text)
	if !ok {
		if i := strings.Index(text, "/ARQ"); i > 0 {
			n, ok = USRNumeric(text[:i+4])
		} else if i := strings.IndexByte(text, '/'); i > 0 {
			n, ok = USRNumeric(text[:i])
		}
	}
	if !ok {
		n = 1
	}
	return []byte(strconv.Itoa(n) + "\r")
}

// Failure is why a call did not connect.
type Failure int

// Failures.
const (
	FailNoCarrier Failure = iota
	FailBusy
	FailNoDialtone
	FailNoAnswer
)

// FailureText is the result for a failed call under the X level: X0 and X1
// report only NO CARRIER; X2 adds NO DIAL TONE, X3 BUSY, X4 both.
func (e *Engine) FailureText(f Failure) string {
	switch {
	case f == FailBusy && (e.X == 3 || e.X == 4):
		return "BUSY"
	case f == FailNoDialtone && (e.X == 2 || e.X == 4):
		return "NO DIAL TONE"
	}
	return "NO CARRIER"
}

// ConnectText is the CONNECT message for speed of an error-controlled
// (V.42) connection per X and &A; ConnectTextEC says it for either kind.
func (e *Engine) ConnectText(speed int) string { return e.ConnectTextEC(speed, true) }

// ConnectTextEC is the CONNECT message for speed per X and &A (USR Courier
// V.34 manual, "Additional Result Code Subsets"): X0 a bare CONNECT; &A1
// adds /ARQ when the call is under error control, &A2 the modulation, &A3
// the error control protocol and compression. A call without error control
// never says ARQ; under &A3 its protocol is NONE ("CONNECT 2400/NONE" in
// the manual) and it has no compression.
func (e *Engine) ConnectTextEC(speed int, ec bool) string {
	if e.X == 0 {
		if ec && e.ARQ >= 1 {
			return "CONNECT/ARQ"
		}
		return "CONNECT"
	}
	s := "CONNECT " + strconv.Itoa(speed)
	if ec && e.ARQ >= 1 {
		s += "/ARQ"
	}
	if mod := modulation(speed); e.ARQ >= 2 && mod != "" {
		s += "/" + mod
	}
	if e.ARQ >= 3 {
		if ec {
			s += "/LAPM/V42BIS"
		} else {
			s += "/NONE"
		}
	}
	return s
}

// modulation is the &A2 indicator for a rate. The manual lists indicators
// for V.32, V.34 (and USR's HST, VFC) only: a V.22bis call at 2400 or
// slower has none.
func modulation(speed int) string {
	switch {
	case speed > 14400:
		return "V34"
	case speed > 2400:
		return "V32"
	}
	return ""
}

// Guard is the escape guard time, S12 in fiftieths of a second.
func (e *Engine) Guard() time.Duration { return time.Duration(e.Regs[12]) * 20 * time.Millisecond }

// EscapeChar is S2; above 127 the escape is disabled.
func (e *Engine) EscapeChar() (byte, bool) { return byte(e.Regs[2]), e.Regs[2] <= 127 }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Escape watches data mode for the Hayes escape: a guard time of silence,
// three escape characters (S2) each within the guard time of the last, and
// the guard time of silence again (the host's timer checks Armed then).
type Escape struct {
	n        int
	at, last time.Time
}

// Data feeds what the DTE sent at now. It reports whether the data ended
// with a complete "+++" in time: the host then waits the guard time and,
// if Armed is still true, goes to online-command mode.
func (s *Escape) Data(b []byte, now time.Time, e *Engine) bool {
	char, on := e.EscapeChar()
	guard := e.Guard()
	for _, c := range b {
		switch {
		case !on:
			s.n = 0
		case c == char && s.n == 0 && (s.last.IsZero() || now.Sub(s.last) >= guard):
			s.n, s.at = 1, now
		case c == char && s.n > 0 && s.n < 3 && now.Sub(s.at) < guard:
			s.n++
			s.at = now
		default:
			s.n = 0
		}
		s.last = now
	}
	return s.n == 3
}

// Armed reports whether the last data was a complete escape sequence and
// nothing came after it.
func (s *Escape) Armed() bool { return s.n == 3 }

// Reset starts over, with the guard time counted from now.
func (s *Escape) Reset(now time.Time) { s.n, s.last = 0, now }
