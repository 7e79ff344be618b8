package modem

import (
	"testing"
	"time"
)

func TestDetectPPPFrame(t *testing.T) {
	tests := []struct {
		name             string
		in               []byte
		isPPP, isDecided bool
	}{
		{"win95 escaped control", []byte{0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21}, true, true},
		{"plain", []byte{0x7e, 0xff, 0x03, 0xc0, 0x21, 0x01}, true, true},
		{"all escaped", []byte{0x7e, 0x7d, 0xdf, 0x7d, 0x23, 0xc0, 0x21}, true, true},
		{"double flag", []byte{0x7e, 0x7e, 0xff, 0x03, 0xc0, 0x21}, true, true},
		{"prefix", []byte{0x7e, 0xff, 0x7d}, false, false},
		{"flag only", []byte{0x7e}, false, false},
		{"tilde in a name", []byte{0x7e, 'j', 'o'}, false, true},
		{"IPCP not LCP", []byte{0x7e, 0xff, 0x03, 0x80, 0x21}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, d := DetectPPPFrame(tt.in)
			if p != tt.isPPP || d != tt.isDecided {
				t.Errorf("DetectPPPFrame(%x) = %v, %v; want %v, %v", tt.in, p, d, tt.isPPP, tt.isDecided)
			}
		})
	}
}

func TestLoginInput(t *testing.T) {
	li := &loginInput{autoPPP: true, detect: DetectPPPFrame}
	st := li.feed([]byte("dia"))
	if string(st.echo) != "dia" || st.done {
		t.Fatalf("%+v", st)
	}
	st = li.feed([]byte("x\x7fl\rdial\r"))
	if !st.done || st.line != "dial" || string(li.rest()) != "dial\r" {
		t.Fatalf("%+v rest %q", st, li.rest())
	}
	li = &loginInput{autoPPP: true, detect: DetectPPPFrame}
	st = li.feed([]byte("\r\n~~x\x7e\xff\x7d"))
	if st.ppp || string(st.echo) != "~~x" {
		t.Fatalf("undecided frame echoed or taken: %+v", st)
	}
	st = li.feed([]byte{0x23, 0xc0, 0x21})
	if !st.ppp || st.pppStart != 5 {
		t.Fatalf("%+v", st)
	}
}

func TestExpandPrompt(t *testing.T) {
	now := time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)
	got := expandPrompt(`\I on \L\n\T login: `, "ttyUSB0", "CONNECT 28800", now)
	if want := "CONNECT 28800 on ttyUSB0\r\n15:04:05 login: "; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// FuzzDetectLogin: the login/AutoPPP detector gives the same outcome however
// the caller's bytes are split into reads, never echoes a detected frame,
// and a detected frame starts with a flag.
func FuzzDetectLogin(f *testing.F) {
	f.Add([]byte("dial\rdial\r"), uint8(2))
	f.Add(append([]byte("CLIENT"), lcpFrame...), uint8(7))
	f.Add(lcpFrame, uint8(3))
	f.Add([]byte("~~\x7e\xff\x7d\x23\xc0"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		whole := &loginInput{autoPPP: true, detect: DetectPPPFrame}
		a := whole.feed(in)
		parts := &loginInput{autoPPP: true, detect: DetectPPPFrame}
		cut := 0
		if len(in) > 0 {
			cut = int(split) % (len(in) + 1)
		}
		b := parts.feed(in[:cut])
		var echo []byte
		echo = append(echo, b.echo...)
		if !b.ppp && !b.done {
			b = parts.feed(in[cut:])
			echo = append(echo, b.echo...)
		} else {
			// Finished early: the rest must stay unconsumed, as with whole.
			parts.raw = append(parts.raw, in[cut:]...)
		}
		if a.ppp != b.ppp || a.done != b.done || a.line != b.line || (a.ppp && a.pppStart != b.pppStart) {
			t.Fatalf("whole %+v, split at %d %+v", a, cut, b)
		}
		if !a.done && !a.ppp && string(a.echo) != string(echo) {
			t.Fatalf("echo whole %q split %q", a.echo, echo)
		}
		if a.ppp {
			if in[a.pppStart] != 0x7e {
				t.Fatalf("frame starts with %x", in[a.pppStart])
			}
		}
	})
}
