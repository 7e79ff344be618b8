package dsp

import "math"

// Goertzel measures the power of one frequency over a block of N samples
// (a single DFT bin, computed with a second-order recursion).
type Goertzel struct {
	coeff  float64
	n, cnt int
	s1, s2 float64
}

// NewGoertzel returns a detector for hz Hz over blocks of n samples.
func NewGoertzel(hz float64, n int) *Goertzel {
	return &Goertzel{coeff: 2 * math.Cos(2*math.Pi*hz/SampleRate), n: n}
}

// Push feeds one sample; at the end of each block it returns the bin's
// power (in units of mean-square signal: a sine of amplitude A gives A²/2)
// and true.
func (g *Goertzel) Push(x float64) (float64, bool) {
	s := x + g.coeff*g.s1 - g.s2
	g.s2, g.s1 = g.s1, s
	g.cnt++
	if g.cnt < g.n {
		return 0, false
	}
	p := g.s1*g.s1 + g.s2*g.s2 - g.coeff*g.s1*g.s2
	g.s1, g.s2, g.cnt = 0, 0, 0
	nn := float64(g.n)
	return 2 * p / (nn * nn), true
}
