package console

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// terminal wraps the writer every renderer prints through. What the
// renderers show comes in part from peers (a User-Agent, a SIP user name, a
// PPP peer's name, a disconnect reason); a terminal acts on the control
// characters in it: ESC sequences clear the screen, retitle the window or,
// on some emulators, answer back into the shell's input. Controls (C0 but
// newline and tab, DEL, C1), bidirectional overrides and invalid UTF-8 are
// written as visible \xNN / \uNNNN escapes instead. The renderers
// themselves never emit any of them.
func terminal(w io.Writer) io.Writer {
	if _, ok := w.(termWriter); ok {
		return w
	}
	return termWriter{w}
}

type termWriter struct{ w io.Writer }

func (t termWriter) Write(p []byte) (int, error) {
	if _, err := t.w.Write(sanitize(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sanitize returns p with what a terminal would interpret escaped; p
// itself when there is nothing to escape.
func sanitize(p []byte) []byte {
	clean := true
	for i := 0; i < len(p) && clean; {
		r, n := utf8.DecodeRune(p[i:])
		clean = !unsafeRune(r, n)
		i += n
	}
	if clean {
		return p
	}
	out := make([]byte, 0, len(p)+16)
	for len(p) > 0 {
		r, n := utf8.DecodeRune(p)
		switch {
		case r == utf8.RuneError && n <= 1:
			out = fmt.Appendf(out, `\x%02x`, p[0])
		case unsafeRune(r, n) && r < 0x100:
			out = fmt.Appendf(out, `\x%02x`, r)
		case unsafeRune(r, n):
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, p[:n]...)
		}
		p = p[n:]
	}
	return out
}

func unsafeRune(r rune, n int) bool {
	switch {
	case r == utf8.RuneError && n <= 1:
		return true
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		// Bidirectional embeddings, overrides and isolates reorder the
		// rest of the line (Unicode TR #9).
		return true
	}
	return false
}
