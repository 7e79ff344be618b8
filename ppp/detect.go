package ppp

import "bytes"

// lcpStarts are the unescaped openings of a PPP frame carrying LCP: with
// address and control (7E FF 03 C0 21) and without (ACFC, 7E C0 21).
var lcpStarts = [][]byte{{0x7E, 0xFF, 0x03, 0xC0, 0x21}, {0x7E, 0xC0, 0x21}}

// Detect tells, from the first octets received after CONNECT, a PPP client
// from a person typing a login name (mgetty's AutoPPP, logname.c). It looks
// for an LCP frame opening after removing 0x7D escapes, so 7E FF 7D 23 C0 21
// (pppd and Windows, 0x03 escaped) matches as well as 7E FF 03 C0 21 and
// 7E C0 21. decided is false while more octets are needed: b is empty, or
// ends in what may be the start of a frame, or holds text without an end of
// line yet.
func Detect(b []byte) (isPPP, decided bool) {
	u := unescape(b)
	for _, pat := range lcpStarts {
		if bytes.Contains(u, pat) {
			return true, true
		}
	}
	// A line typed at the login prompt ends with CR or LF; a frame opening
	// cut short by the read may still complete.
	if i := bytes.LastIndexByte(u, 0x7E); i >= 0 {
		tail := u[i:]
		for _, pat := range lcpStarts {
			if len(tail) < len(pat) && bytes.HasPrefix(pat, tail) {
				return false, false
			}
		}
		if len(b) > 0 && b[len(b)-1] == 0x7D {
			return false, false
		}
	}
	if bytes.ContainsAny(b, "\r\n") {
		return false, true
	}
	return false, false
}

func unescape(b []byte) []byte {
	if bytes.IndexByte(b, 0x7D) < 0 {
		return b
	}
	u := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == 0x7D && i+1 < len(b) {
			i++
			u = append(u, b[i]^0x20)
			continue
		}
		if b[i] == 0x7D {
			break
		}
		u = append(u, b[i])
	}
	return u
}
