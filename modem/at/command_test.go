package at

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseCommandLine(t *testing.T) {
	tests := []struct {
		in   string
		want []Command
		err  bool
	}{
		{"Q0V1H0", []Command{{Name: "Q", HasNum: true}, {Name: "V", Num: 1, HasNum: true}, {Name: "H", HasNum: true}}, false},
		{"S0=0Q0&D3&C1", []Command{{Name: "S", Set: true, HasNum: true}, {Name: "Q", HasNum: true}, {Name: "&D", Num: 3, HasNum: true}, {Name: "&C", Num: 1, HasNum: true}}, false},
		{"s7?", []Command{{Name: "S", Reg: 7, Query: true}}, false},
		{"DT555-1234;", []Command{{Name: "D", Dial: "T555-1234;"}}, false},
		{"E0 X4 DT 12", []Command{{Name: "E", HasNum: true}, {Name: "X", Num: 4, HasNum: true}, {Name: "D", Dial: "T 12"}}, false},
		{"Z", []Command{{Name: "Z"}}, false},
		{"#CID=1", []Command{{Name: "#CID", Set: true, Num: 1, HasNum: true}}, false},
		{"+vcid=1;E0", []Command{{Name: "+VCID", Set: true, Num: 1, HasNum: true}, {Name: "E", HasNum: true}}, false},
		{"+GMI?", []Command{{Name: "+GMI", Query: true}}, false},
		{"", nil, false},
		{"S=1", nil, true},
		{"&", nil, true},
		{"$", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCommandLine(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrSyntax) {
				t.Errorf("err %v does not wrap ErrSyntax", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// FuzzParseCommandLine: never panics; formatting the parsed commands and
// parsing again gives the same commands.
func FuzzParseCommandLine(f *testing.F) {
	for _, s := range []string{"Q0V1H0", "S0=0Q0&D3&C1", "DT5551234", "I3", "S7?", "&F&B1&H1&R2&A3&K3X4", "X?", "#CID=1", "+VCID=?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cmds, err := ParseCommandLine(s)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, c := range cmds {
			b.WriteString(c.String())
		}
		again, err := ParseCommandLine(b.String())
		if err != nil {
			t.Fatalf("%q -> %q: %v", s, b.String(), err)
		}
		norm := func(cs []Command) []Command {
			for i := range cs {
				if cs[i].Num >= 1e6 { // clamped on input
					cs[i].Num = 0
				}
			}
			return cs
		}
		if d := cmp.Diff(norm(cmds), norm(again)); d != "" {
			t.Fatalf("%q -> %q (-first +second):\n%s", s, b.String(), d)
		}
	})
}

func TestExpandSend(t *testing.T) {
	got := ExpandSend(`\dATQ0V1H0`, 500*time.Millisecond)
	want := []Piece{{Pause: 500 * time.Millisecond}, {Data: []byte("ATQ0V1H0\r")}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	got = ExpandSend(`\020\003+++\c`, time.Second)
	want = []Piece{{Data: []byte("\x10\x03+++")}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
