package wav

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.wav")
	in := []int16{0, 1, -1, 32767, -32768, 1234}
	if err := Write(p, 8000, in); err != nil {
		t.Fatal(err)
	}
	rate, out, err := Read(p)
	if err != nil || rate != 8000 || !slices.Equal(in, out) {
		t.Fatalf("got %d %v %v", rate, out, err)
	}
}

func TestBad(t *testing.T) {
	for _, b := range []string{"", "RIFF", "RIFF\x00\x00\x00\x00WAVE", "RIFF\x00\x00\x00\x00WAVEdata\x02\x00\x00\x00\x01\x00",
		"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x03\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x20\x00"} {
		if _, _, err := Parse([]byte(b)); err == nil {
			t.Errorf("%q: no error", b)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x02\x00\x00\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, s, err := Parse(b)
		if err == nil && 2*len(s) > len(b) {
			t.Fatalf("%d samples from %d bytes", len(s), len(b))
		}
	})
}
