package rtpload

import (
	"reflect"
	"testing"
)

func TestBencode(t *testing.T) {
	for _, c := range []struct {
		name string
		in   any
		want string
	}{
		{"string", "offer", "5:offer"},
		{"empty", "", "0:"},
		{"int", -42, "i-42e"},
		{"list", []any{"a", 1}, "l1:ai1ee"},
		{"strings", []string{"origin", "session-connection"}, "l6:origin18:session-connectione"},
		{"sorted dict", map[string]any{"sdp": "v=0", "command": "offer"}, "d7:command5:offer3:sdp3:v=0e"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Encode(nil, c.in)
			if err != nil || string(got) != c.want {
				t.Fatalf("Encode = %q, %v; want %q", got, err, c.want)
			}
			back, err := Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			want := c.in
			if l, ok := c.in.([]string); ok {
				a := make([]any, len(l))
				for i, s := range l {
					a[i] = s
				}
				want = a
			}
			if !reflect.DeepEqual(back, want) {
				t.Errorf("Decode = %#v, want %#v", back, want)
			}
		})
	}
}

func TestBencodeMalformed(t *testing.T) {
	for _, in := range []string{"", "i12", "ie", "i1x2e", "l", "d3:abc", "d1:ae", "5:abc", "-1:a", "x", "1:ab",
		"99999999999:a", "di1ei2ee", string(make([]byte, 0)) + "llllllllllllllllllllllllllllllllllllllllllllll"} {
		if v, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%q) = %#v, want an error", in, v)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"d7:command5:offer3:sdp3:v=0e", "l1:ai1ee", "i-1e", "0:"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes encodes back to a value that decodes alike.
		enc, err := Encode(nil, v)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", v, err)
		}
		v2, err := Decode(enc)
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip %q -> %q: %#v, %v", b, enc, v2, err)
		}
	})
}
