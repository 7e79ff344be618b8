package config

import (
	"fmt"
	"strings"
)

// pppWords splits one line of a pppd options file or pap-secrets into
// words the way pppd's getword (options.c) does: white space separates
// words; "..." or '...' quote (also in the middle of a word); a # at the
// start of a word begins a comment; backslash escapes \a \b \f \n \r \s
// (space) \t, \ooo (octal), \xHH, and any other character stands for
// itself. A word that is only quotes ("") is an empty word.
func pppWords(line string) ([]string, error) {
	return words(line, true)
}

// splitWords splits an mgetty chat sequence: like pppWords but backslash
// sequences are kept as written (the chat program gives \d, \c their
// meaning).
func splitWords(line string) ([]string, error) {
	return words(line, false)
}

func words(line string, escapes bool) ([]string, error) {
	var out []string
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) || line[i] == '#' {
			return out, nil
		}
		var w strings.Builder
		var quote byte
		quoteAt := 0
		for ; i < len(line); i++ {
			c := line[i]
			if quote == 0 && (c == ' ' || c == '\t') {
				break
			}
			switch {
			case c == '\\' && escapes:
				if i+1 >= len(line) {
					return nil, fmt.Errorf("backslash at the end of the line (line continuation is not supported)")
				}
				n, v := unescape(line[i+1:])
				w.WriteByte(v)
				i += n
			case quote != 0 && c == quote:
				quote = 0
			case quote == 0 && (c == '"' || c == '\''):
				quote, quoteAt = c, i
			default:
				w.WriteByte(c)
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("unterminated quoted string: %s", line[quoteAt:])
		}
		out = append(out, w.String())
	}
}

// unescape decodes the escape after a backslash in s and returns how many
// bytes of s it used and the byte it stands for.
func unescape(s string) (int, byte) {
	c := s[0]
	switch c {
	case 'a':
		return 1, '\a'
	case 'b':
		return 1, '\b'
	case 'f':
		return 1, '\f'
	case 'n':
		return 1, '\n'
	case 'r':
		return 1, '\r'
	case 's':
		return 1, ' '
	case 't':
		return 1, '\t'
	case 'x':
		v, n := 0, 0
		for n < 2 && 1+n < len(s) && isHex(s[1+n]) {
			v = v*16 + hexVal(s[1+n])
			n++
		}
		if n == 0 {
			return 1, 'x'
		}
		return 1 + n, byte(v)
	}
	if c >= '0' && c <= '7' {
		v, n := 0, 0
		for n < 3 && n < len(s) && s[n] >= '0' && s[n] <= '7' {
			v = v*8 + int(s[n]-'0')
			n++
		}
		return n, byte(v)
	}
	return 1, c
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}
