package ppp

import "testing"

func TestDetect(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		ppp, decided bool
	}{
		{"empty", "", false, false},
		{"pppd first frame", "\x7e\xff\x7d\x23\xc0\x21\x7d\x21\x7d\x21", true, true},
		{"plain", "\x7e\xff\x03\xc0\x21\x01", true, true},
		{"acfc", "\x7e\xc0\x21\x01", true, true},
		{"ff escaped too", "\x7e\x7d\xdf\x7d\x23\xc0\x21", true, true},
		{"noise then frame", "\r\n\x00\x7e\xff\x7d\x23\xc0\x21", true, true},
		{"cut after flag", "\x7e", false, false},
		{"cut in escape", "\x7e\xff\x7d", false, false},
		{"cut before protocol", "\x7e\xff\x7d\x23\xc0", false, false},
		{"login name typed", "dial\r", false, true},
		{"login name typing", "dia", false, false},
		{"login with LF", "dial\n", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := Detect([]byte(tc.in))
			if p != tc.ppp || d != tc.decided {
				t.Errorf("Detect(%q) = %v, %v; want %v, %v", tc.in, p, d, tc.ppp, tc.decided)
			}
		})
	}
}
