package at

import (
	"fmt"
	"strconv"
	"strings"
)

// Code is the kind of a modem result line.
type Code int

// Result codes. The numeric values of OK..NoAnswer are the Hayes numeric codes
// 0..8, identical on every modem; everything above 8 is vendor specific, so the
// rest are plain identifiers.
const (
	OK          Code = 0
	Connect     Code = 1
	Ring        Code = 2
	NoCarrier   Code = 3
	Error       Code = 4
	NoDialtone  Code = 6
	Busy        Code = 7
	NoAnswer    Code = 8
	Unknown     Code = 100 + iota // not a result: echo, junk, data
	Carrier                       // Rockwell "CARRIER 28800" before CONNECT
	Protocol                      // Rockwell "PROTOCOL: LAPM"
	Compression                   // Rockwell "COMPRESSION: V.42BIS"
	Ringing                       // USR "RINGING" (ringback while dialling)
	Voice                         // USR "VOICE"
)

var codeNames = map[Code]string{
	OK: "OK", Connect: "CONNECT", Ring: "RING", NoCarrier: "NO CARRIER", Error: "ERROR",
	NoDialtone: "NO DIALTONE", Busy: "BUSY", NoAnswer: "NO ANSWER", Unknown: "unknown",
	Carrier: "CARRIER", Protocol: "PROTOCOL", Compression: "COMPRESSION", Ringing: "RINGING", Voice: "VOICE",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// Final reports whether c ends a command (OK, CONNECT, ERROR and the call
// failures); RING and the Rockwell informational lines do not.
func (c Code) Final() bool {
	switch c {
	case OK, Connect, NoCarrier, Error, NoDialtone, Busy, NoAnswer:
		return true
	default: // the other values: after the switch
	}
	return false
}

// Result is one parsed result line.
type Result struct {
	Code Code
	// Speed is the line rate in bit/s for CONNECT and CARRIER; 0 when the
	// modem gave none (a bare CONNECT means 300 in Hayes terms, see Rate).
	Speed int
	// Tail is the text after the speed, without the leading slash:
	// "ARQ/V34/LAPM/V42BIS" for CONNECT, the protocol name for
	// PROTOCOL/COMPRESSION, the ring tag for "RING 1" (distinctive ring).
	Tail string
	// Numeric is true when the line was a numeric (V0) code.
	Numeric bool
	// Text is the line as received, trimmed of CR/LF.
	Text string
}

// Rate is the line rate to assume: Speed, or 300 for a bare CONNECT.
func (r Result) Rate() int {
	if r.Code == Connect && r.Speed == 0 {
		return 300
	}
	return r.Speed
}

// usrNumeric maps the USR Courier/Sportster numeric codes above 8 (X1..X4,
// &A1) to their verbose text. USR Courier V.34 manual p. 4-17; the codes of
// other vendors differ, which is why the line manager runs the modem in V1.
var usrNumeric = map[int]string{
	5: "CONNECT 1200", 10: "CONNECT 2400", 11: "RINGING", 12: "VOICE", 13: "CONNECT 9600",
	14: "CONNECT/ARQ", 15: "CONNECT 1200/ARQ", 16: "CONNECT 2400/ARQ", 17: "CONNECT 9600/ARQ",
	18: "CONNECT 4800", 19: "CONNECT 4800/ARQ", 20: "CONNECT 7200", 21: "CONNECT 12000",
	22: "CONNECT 12000/ARQ", 24: "CONNECT 7200/ARQ", 25: "CONNECT 14400", 26: "CONNECT 14400/ARQ",
	43: "CONNECT 16800", 57: "CONNECT 16800/ARQ", 85: "CONNECT 19200", 88: "CONNECT 19200/ARQ",
	91: "CONNECT 21600", 94: "CONNECT 21600/ARQ", 99: "CONNECT 24000", 100: "CONNECT 24000/ARQ",
	103: "CONNECT 26400", 104: "CONNECT 26400/ARQ", 107: "CONNECT 28800", 108: "CONNECT 28800/ARQ",
}

// USRNumeric returns the USR numeric code for a verbose result text, as the
// emulated Sportster prints it in V0, and false when there is none.
func USRNumeric(verbose string) (int, bool) {
	switch verbose {
	case "OK":
		return 0, true
	case "CONNECT":
		return 1, true
	case "RING":
		return 2, true
	case "NO CARRIER":
		return 3, true
	case "ERROR":
		return 4, true
	case "NO DIAL TONE", "NO DIALTONE":
		return 6, true
	case "BUSY":
		return 7, true
	case "NO ANSWER":
		return 8, true
	}
	for n, s := range usrNumeric {
		if s == verbose {
			return n, true
		}
	}
	return 0, false
}

// ParseResult parses one line the modem sent (CR/LF may be included). Lines
// that are not results (echoed commands, junk, empty) give Code Unknown.
//
// Verbose forms: "OK", "CONNECT", "CONNECT 28800", "CONNECT 28800/ARQ/V34/LAPM/V42BIS",
// "CONNECT 57600/REL" (the tail is kept whatever it says), "RING", "RING 1"
// (mgetty's distinctive ring), "NO CARRIER", "ERROR", "NO DIALTONE" and USR's
// "NO DIAL TONE", "BUSY", "NO ANSWER", Rockwell's "CARRIER 28800",
// "PROTOCOL: LAPM", "COMPRESSION: V.42BIS". Numeric: the Hayes codes 0..8 and
// the USR codes in usrNumeric.
func ParseResult(line string) Result {
	text := strings.Trim(line, "\r\n")
	r := Result{Code: Unknown, Text: text}
	s := strings.TrimSpace(text)
	if s == "" {
		return r
	}
	if n, err := strconv.Atoi(s); err == nil && len(s) <= 3 && s[0] != '+' && s[0] != '-' {
		var v string
		switch {
		case n >= 0 && n <= 8 && n != 5:
			v = Code(n).verbose()
		default:
			v = usrNumeric[n]
		}
		if v == "" {
			return r
		}
		p := parseVerbose(v)
		p.Numeric, p.Text = true, text
		return p
	}
	p := parseVerbose(s)
	p.Text = text
	return p
}

// verbose is the text of a basic code 0..8 in V1.
func (c Code) verbose() string {
	switch c {
	case OK, Connect, Ring, NoCarrier, Error, NoDialtone, Busy, NoAnswer:
		return codeNames[c]
	default: // the other values: after the switch
	}
	return ""
}

func parseVerbose(s string) Result {
	r := Result{Code: Unknown}
	word, rest, _ := strings.Cut(s, " ")
	switch word {
	case "OK", "ERROR", "BUSY", "RINGING", "VOICE":
		if rest != "" {
			return r
		}
		r.Code = map[string]Code{"OK": OK, "ERROR": Error, "BUSY": Busy, "RINGING": Ringing, "VOICE": Voice}[word]
	case "RING":
		// "RING", "RING 1", "RING A", "RING;1234": mgetty ring.c counts
		// lines beginning with RING; the tag marks a distinctive ring.
		r.Code = Ring
		r.Tail = strings.TrimLeft(rest, " ")
	case "NO":
		switch rest {
		case "CARRIER":
			r.Code = NoCarrier
		case "DIALTONE", "DIAL TONE":
			r.Code = NoDialtone
		case "ANSWER":
			r.Code = NoAnswer
		}
	case "CONNECT", "CONNECT/ARQ":
		// USR extended format: CONNECT <rate>[/ARQ[/<modulation>/<EC>/<compression>]].
		r.Code = Connect
		if word == "CONNECT/ARQ" {
			if rest != "" {
				return Result{Code: Unknown}
			}
			r.Tail = "ARQ"
			return r
		}
		if rest == "" {
			return r
		}
		sp, tail, _ := strings.Cut(rest, "/")
		n, ok := parseSpeed(sp)
		if !ok || n == 0 {
			return Result{Code: Unknown}
		}
		r.Speed, r.Tail = n, tail
	case "CARRIER":
		n, ok := parseSpeed(rest)
		if !ok {
			return r
		}
		r.Code, r.Speed = Carrier, n
	case "PROTOCOL:", "COMPRESSION:":
		r.Code = Protocol
		if word == "COMPRESSION:" {
			r.Code = Compression
		}
		r.Tail = strings.TrimSpace(rest)
	}
	return r
}

// parseSpeed reads a decimal rate of at most 7 digits (the fastest modem rate
// is 115200 DTE / 56000 line; 7 digits keep the value sane).
func parseSpeed(s string) (int, bool) {
	if len(s) == 0 || len(s) > 7 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, _ := strconv.Atoi(s)
	return n, true
}

// String formats r as the verbose (V1) text a modem sends, without framing.
// ParseResult(r.String()) gives r back (apart from Text and Numeric) for every
// result ParseResult can produce.
func (r Result) String() string {
	switch r.Code {
	case Connect:
		s := "CONNECT"
		if r.Speed > 0 {
			s += " " + strconv.Itoa(r.Speed)
			if r.Tail != "" {
				s += "/" + r.Tail
			}
		} else if r.Tail == "ARQ" {
			s += "/ARQ"
		}
		return s
	case Ring:
		if r.Tail != "" {
			return "RING " + r.Tail
		}
		return "RING"
	case Carrier:
		return fmt.Sprintf("CARRIER %d", r.Speed)
	case Protocol:
		return "PROTOCOL: " + r.Tail
	case Compression:
		return "COMPRESSION: " + r.Tail
	case Unknown:
		return r.Text
	default: // the other values: after the switch
	}
	return r.Code.String()
}

// Connection is what a call's CONNECT (and the Rockwell lines before it) say
// about the link.
type Connection struct {
	Speed    int    // line rate, bit/s
	Protocol string // "ARQ/V34/LAPM/V42BIS", or assembled from PROTOCOL/COMPRESSION
	Result   string // the CONNECT line itself
}

// Merge folds a result into c the way mgetty's cnd.c does: CARRIER gives the
// rate, PROTOCOL and COMPRESSION the protocol, CONNECT overrides whatever it
// states itself.
func (c *Connection) Merge(r Result) {
	switch r.Code {
	case Carrier:
		c.Speed = r.Speed
	case Protocol, Compression:
		if r.Tail != "" && r.Tail != "NONE" {
			if c.Protocol != "" {
				c.Protocol += "/"
			}
			c.Protocol += r.Tail
		}
	case Connect:
		c.Result = r.Text
		if r.Speed > 0 {
			c.Speed = r.Speed
		} else if c.Speed == 0 {
			c.Speed = r.Rate()
		}
		if r.Tail != "" {
			c.Protocol = r.Tail
		}
	default: // the other results say nothing about the connection
	}
}
