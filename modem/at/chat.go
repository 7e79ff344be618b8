package at

import (
	"fmt"
	"strings"
	"time"
)

// Step is one expect/send pair of a chat script: wait for Expect (empty: wait
// for nothing), then send Send.
type Step struct {
	Expect string
	Send   string
}

// Script is an mgetty/chat-style expect-send sequence.
type Script []Step

// DefaultInitChat is mgetty's init-chat (conf_mg.c def_init_chat_seq with
// policy.h MODEM_INIT_STRING): a 500 ms pause, then ATQ0V1H0 and
// ATS0=0Q0&D3&C1, each answered with OK.
var DefaultInitChat = []string{"", `\dATQ0V1H0`, "OK", `ATS0=0Q0&D3&C1`, "OK"}

// ForceInitChat is mgetty's force-init-chat, used when the modem does not
// answer the init chat: DLE ETX (ends a voice/fax data mode), 1.5 s of
// silence, +++, 1.5 s of silence, then ATQ0V1H0.
var ForceInitChat = []string{"", `\d\020\003\d\d\d+++\d\d\d\r\dATQ0V1H0`, "OK"}

// ParseChat turns mgetty's alternating expect/send list into a Script. A
// trailing expect without send is kept with an empty Send.
func ParseChat(words []string) Script {
	var s Script
	for i := 0; i < len(words); i += 2 {
		st := Step{Expect: words[i]}
		if i+1 < len(words) {
			st.Send = words[i+1]
		}
		s = append(s, st)
	}
	return s
}

// Piece is one part of an expanded send string: bytes to write, or a pause.
type Piece struct {
	Data  []byte
	Pause time.Duration
}

// ExpandSend expands the escapes of an mgetty/chat send string (do_chat.c):
// \d pause 500 ms (pauseD), \p 250 ms, \r CR, \n LF, \s space, \\ backslash,
// \NNN octal byte, \c suppresses the CR that otherwise ends the string.
// crlf is the line end appended unless \c was given.
func ExpandSend(s string, pauseD time.Duration) []Piece {
	var out []Piece
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			out = append(out, Piece{Data: cur})
			cur = nil
		}
	}
	noCR := false
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			cur = append(cur, s[i])
			continue
		}
		i++
		switch s[i] {
		case 'd':
			flush()
			out = append(out, Piece{Pause: pauseD})
		case 'p':
			flush()
			out = append(out, Piece{Pause: pauseD / 2})
		case 'r':
			cur = append(cur, '\r')
		case 'n':
			cur = append(cur, '\n')
		case 's':
			cur = append(cur, ' ')
		case 'c':
			noCR = true
		case '\\':
			cur = append(cur, '\\')
		default:
			if s[i] >= '0' && s[i] <= '7' {
				v, j := 0, i
				for ; j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7'; j++ {
					v = v*8 + int(s[j]-'0')
				}
				cur = append(cur, byte(v))
				i = j - 1
			} else {
				cur = append(cur, '\\', s[i])
			}
		}
	}
	if !noCR {
		cur = append(cur, '\r')
	}
	flush()
	return out
}

// String formats a script for logs: `"" \dATQ0V1H0 OK ...`.
func (s Script) String() string {
	var b strings.Builder
	for i, st := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%q %q", st.Expect, st.Send)
	}
	return b.String()
}
