package at

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseResult(t *testing.T) {
	tests := []struct {
		in   string
		want Result
	}{
		{"OK\r\n", Result{Code: OK}},
		{"\r\nCONNECT 28800/ARQ/V34/LAPM/V42BIS\r\n", Result{Code: Connect, Speed: 28800, Tail: "ARQ/V34/LAPM/V42BIS"}},
		{"CONNECT 28800", Result{Code: Connect, Speed: 28800}},
		{"CONNECT", Result{Code: Connect}},
		{"CONNECT/ARQ", Result{Code: Connect, Tail: "ARQ"}},
		{"CONNECT 9600/SYNC", Result{Code: Connect, Speed: 9600, Tail: "SYNC"}},
		{"CONNECT fast", Result{Code: Unknown}},
		{"CONNECT 0", Result{Code: Unknown}},
		{"RING", Result{Code: Ring}},
		{"RING 1", Result{Code: Ring, Tail: "1"}},
		{"NO CARRIER", Result{Code: NoCarrier}},
		{"NO DIAL TONE", Result{Code: NoDialtone}},
		{"NO DIALTONE", Result{Code: NoDialtone}},
		{"NO ANSWER", Result{Code: NoAnswer}},
		{"BUSY", Result{Code: Busy}},
		{"ERROR", Result{Code: Error}},
		{"CARRIER 28800", Result{Code: Carrier, Speed: 28800}},
		{"PROTOCOL: LAPM", Result{Code: Protocol, Tail: "LAPM"}},
		{"COMPRESSION: V.42BIS", Result{Code: Compression, Tail: "V.42BIS"}},
		{"0\r", Result{Code: OK, Numeric: true}},
		{"3", Result{Code: NoCarrier, Numeric: true}},
		{"108", Result{Code: Connect, Speed: 28800, Tail: "ARQ", Numeric: true}},
		{"107", Result{Code: Connect, Speed: 28800, Numeric: true}},
		{"9", Result{Code: Unknown}},
		{"ATQ0V1H0", Result{Code: Unknown}},
		{"", Result{Code: Unknown}},
		{"OKAY", Result{Code: Unknown}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := ParseResult(tt.in)
			if d := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Result{}, "Text")); d != "" {
				t.Errorf("ParseResult(%q) (-want +got):\n%s", tt.in, d)
			}
		})
	}
}

func TestConnectionMerge(t *testing.T) {
	var c Connection
	for _, l := range []string{"CARRIER 26400", "PROTOCOL: LAPM", "COMPRESSION: V.42BIS", "CONNECT 38400"} {
		c.Merge(ParseResult(l))
	}
	want := Connection{Speed: 38400, Protocol: "LAPM/V.42BIS", Result: "CONNECT 38400"}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	c = Connection{}
	c.Merge(ParseResult("CONNECT"))
	if c.Speed != 300 {
		t.Errorf("bare CONNECT: speed %d, want 300", c.Speed)
	}
}

func TestUSRNumericRoundTrip(t *testing.T) {
	for n, v := range usrNumeric {
		got, ok := USRNumeric(v)
		if !ok || got != n {
			t.Errorf("USRNumeric(%q) = %d, %v; want %d", v, got, ok, n)
		}
		r := ParseResult(itoa(n))
		if r.String() != v {
			t.Errorf("ParseResult(%d).String() = %q, want %q", n, r.String(), v)
		}
	}
}

func itoa(n int) string { return Result{Code: Carrier, Speed: n}.String()[len("CARRIER "):] }

// FuzzParseResult: never panics, and the verbose form round-trips.
func FuzzParseResult(f *testing.F) {
	for _, s := range []string{"OK", "CONNECT 28800/ARQ/V34/LAPM/V42BIS", "RING 1", "NO CARRIER", "108", "CARRIER 2400",
		"PROTOCOL: LAPM", "CONNECT/ARQ", "NO DIAL TONE", "\r\nBUSY\r\n", "RING;123", "CONNECT 0300/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := ParseResult(s)
		if r.Code == Unknown {
			return
		}
		r2 := ParseResult(r.String())
		if r2.Code != r.Code || r2.Speed != r.Speed || r2.Tail != r.Tail {
			t.Fatalf("round trip %q -> %q: %+v != %+v", s, r.String(), r2, r)
		}
	})
}
