package g711

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"os"
	"testing"
)

// The golden file was written by spandsp 0.0.6's g711.h (the test peer's
// "g711" mode): the 256 expansions of each law, then every 7th linear
// value with its μ-law and A-law code.
func TestAgainstSpandspGolden(t *testing.T) {
	f, err := os.Open("testdata/spandsp-g711.txt.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(z)
	line := 0
	for sc.Scan() {
		var a, b, c int
		if _, err := fmt.Sscan(sc.Text(), &a, &b, &c); err != nil {
			t.Fatalf("line %d: %v", line+1, err)
		}
		if line < 256 {
			if got := DecodeUlaw(byte(a)); int(got) != b {
				t.Errorf("DecodeUlaw(%#x) = %d, spandsp %d", a, got, b)
			}
			if got := DecodeAlaw(byte(a)); int(got) != c {
				t.Errorf("DecodeAlaw(%#x) = %d, spandsp %d", a, got, c)
			}
		} else {
			if got := EncodeUlaw(int16(a)); int(got) != b {
				t.Errorf("EncodeUlaw(%d) = %#x, spandsp %#x", a, got, b)
			}
			if got := EncodeAlaw(int16(a)); int(got) != c {
				t.Errorf("EncodeAlaw(%d) = %#x, spandsp %#x", a, got, c)
			}
		}
		line++
	}
	if line != 256+65536/7+1 {
		t.Fatalf("golden file has %d lines", line)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, law := range []Law{Ulaw, Alaw} {
		for c := 0; c < 256; c++ {
			var x [1]int16
			law.Decode(x[:], []byte{byte(c)})
			var back [1]byte
			law.Encode(back[:], x[:])
			var y [1]int16
			law.Decode(y[:], back[:])
			// μ-law has two zeros (0x7F and 0xFF); every level survives.
			if x != y {
				t.Errorf("%v code %#x: %d -> %#x -> %d", law, c, x[0], back[0], y[0])
			}
		}
	}
}
