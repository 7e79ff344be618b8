// Package sigtest holds what the softmodem's tests share: golden μ-law
// files that pin a modulator's output, and repeatable random payloads.
package sigtest

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/isp-box/isp-box/softmodem/dsp"
	"github.com/isp-box/isp-box/softmodem/g711"
)

// Golden checks modulator output f, as the μ-law a G.711 call would carry,
// against the file name; update (the test's -update flag) rewrites the file
// first. It returns the file's samples, decoded back to linear, for a
// demodulator to read.
func Golden(t testing.TB, name string, f []float64, update bool) []float64 {
	t.Helper()
	pcm := make([]int16, len(f))
	for i, x := range f {
		pcm[i] = dsp.Clip16(x)
	}
	ulaw := make([]byte, len(pcm))
	g711.Ulaw.Encode(ulaw, pcm)
	if update {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, ulaw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ulaw, want) {
		t.Errorf("modulator output differs from %s", name)
	}
	in := make([]int16, len(want))
	g711.Ulaw.Decode(in, want)
	out := make([]float64, len(in))
	for i, x := range in {
		out[i] = float64(x)
	}
	return out
}

// RandomBytes returns n bytes, the same for the same seed and stream.
func RandomBytes(n int, seed, stream uint64) []byte {
	r := rand.New(rand.NewPCG(seed, stream))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}
