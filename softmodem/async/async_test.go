package async

import (
	"bytes"
	"testing"
)

func frame(f Format, data []byte, idle int) []int {
	tx := NewTx(f, Queue(data, 0))
	var bits []int
	for range len(data)*12 + 12 + idle {
		bits = append(bits, tx.Bit())
	}
	return bits
}

func TestGoldenBits(t *testing.T) {
	for _, tc := range []struct {
		f    Format
		in   byte
		want string // the line, first bit first, before idle
	}{
		{Format8N1, 'U', "0101010101"},
		{Format8N1, 0x01, "0100000001"},
		{Format{DataBits: 7, Parity: Even, StopBits: 1}, 'A', "0100000101"},
		{Format{DataBits: 7, Parity: Odd, StopBits: 2}, 'A', "01000001111"},
		{Format{DataBits: 5, StopBits: 1}, 0x1F, "0111111"},
	} {
		bits := frame(tc.f, []byte{tc.in}, 0)
		var s []byte
		for _, b := range bits[:len(tc.want)] {
			s = append(s, byte('0'+b))
		}
		if string(s) != tc.want {
			t.Errorf("%+v %#x: %s, want %s", tc.f, tc.in, s, tc.want)
		}
		for _, b := range bits[len(tc.want):] {
			if b != 1 {
				t.Errorf("%+v: idle is not mark", tc.f)
				break
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	data := []byte("hello, world \x00\xff\x7e")
	for _, f := range []Format{Format8N1, {DataBits: 7, Parity: Even, StopBits: 1}, {DataBits: 8, Parity: Odd, StopBits: 2}} {
		var got []byte
		rx := NewRx(f, func(b byte) { got = append(got, b) })
		for _, b := range append([]int{1, 1}, frame(f, data, 3)...) {
			rx.PutBit(b)
		}
		want := data
		if f.DataBits == 7 {
			want = nil
			for _, b := range data {
				want = append(want, b&0x7F)
			}
		}
		if !bytes.Equal(got, want) || rx.FramingErrors != 0 || rx.ParityErrors != 0 {
			t.Errorf("%+v: %q (%d framing, %d parity errors)", f, got, rx.FramingErrors, rx.ParityErrors)
		}
	}
}

func TestErrors(t *testing.T) {
	var got []byte
	rx := NewRx(Format8N1, func(b byte) { got = append(got, b) })
	// A character whose stop bit is 0 is dropped; the deframer then waits
	// for a mark before taking a start bit.
	for _, b := range []int{1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1} {
		rx.PutBit(b)
	}
	for _, b := range frame(Format8N1, []byte{'x'}, 0) {
		rx.PutBit(b)
	}
	if rx.FramingErrors != 1 || string(got) != "x" {
		t.Errorf("got %q, %d framing errors", got, rx.FramingErrors)
	}
	rx = NewRx(Format{DataBits: 7, Parity: Even, StopBits: 1}, func(b byte) { got = append(got, b) })
	got = nil
	for _, b := range []int{1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1} { // "A" with the wrong parity bit
		rx.PutBit(b)
	}
	if rx.ParityErrors != 1 || len(got) != 0 {
		t.Errorf("parity: got %q, %d errors", got, rx.ParityErrors)
	}
}

func FuzzRx(f *testing.F) {
	f.Add([]byte{0xff, 0x00, 0x55})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		rx := NewRx(Format8N1, func(byte) { n++ })
		for _, x := range b {
			for i := 0; i < 8; i++ {
				rx.PutBit(int(x >> i))
			}
		}
		if n > len(b)*8/10+1 {
			t.Fatalf("%d characters from %d bits", n, len(b)*8)
		}
	})
}
