package dsp

import "math"

// Biquad is a second-order IIR section (direct form I), designed with the
// formulas of R. Bristow-Johnson's "Audio EQ cookbook".
type Biquad struct {
	b0, b1, b2, a1, a2 float64
	x1, x2, y1, y2     float64
}

func newBiquad(b0, b1, b2, a0, a1, a2 float64) Biquad {
	return Biquad{b0: b0 / a0, b1: b1 / a0, b2: b2 / a0, a1: a1 / a0, a2: a2 / a0}
}

// LowPass returns a second-order low-pass at fc Hz with quality q.
func LowPass(fc, q float64) Biquad {
	w := 2 * math.Pi * fc / SampleRate
	alpha := math.Sin(w) / (2 * q)
	c := math.Cos(w)
	return newBiquad((1-c)/2, 1-c, (1-c)/2, 1+alpha, -2*c, 1-alpha)
}

// HighPass returns a second-order high-pass at fc Hz with quality q.
func HighPass(fc, q float64) Biquad {
	w := 2 * math.Pi * fc / SampleRate
	alpha := math.Sin(w) / (2 * q)
	c := math.Cos(w)
	return newBiquad((1+c)/2, -(1 + c), (1+c)/2, 1+alpha, -2*c, 1-alpha)
}

// BandPass returns a second-order band-pass centred on fc Hz, bandwidth
// fc/q, with 0 dB gain at the centre.
func BandPass(fc, q float64) Biquad {
	w := 2 * math.Pi * fc / SampleRate
	alpha := math.Sin(w) / (2 * q)
	c := math.Cos(w)
	return newBiquad(alpha, 0, -alpha, 1+alpha, -2*c, 1-alpha)
}

// Filter runs one sample through the section.
func (f *Biquad) Filter(x float64) float64 {
	y := f.b0*x + f.b1*f.x1 + f.b2*f.x2 - f.a1*f.y1 - f.a2*f.y2
	f.x2, f.x1 = f.x1, x
	f.y2, f.y1 = f.y1, y
	return y
}

// Reset clears the section's memory.
func (f *Biquad) Reset() { f.x1, f.x2, f.y1, f.y2 = 0, 0, 0, 0 }

// Cascade is a chain of biquads (a higher-order filter).
type Cascade []Biquad

// Filter runs one sample through every section in turn.
func (c Cascade) Filter(x float64) float64 {
	for i := range c {
		x = c[i].Filter(x)
	}
	return x
}

// FIR is a real finite impulse response filter over a doubled ring buffer,
// so the convolution runs over one contiguous slice.
type FIR struct {
	taps []float64
	buf  []float64
	pos  int
}

// NewFIR returns a filter with the given taps (taps[0] applies to the
// newest sample).
func NewFIR(taps []float64) *FIR {
	return &FIR{taps: taps, buf: make([]float64, 2*len(taps))}
}

// Filter pushes x and returns the filtered output.
func (f *FIR) Filter(x float64) float64 {
	n := len(f.taps)
	f.pos--
	if f.pos < 0 {
		f.pos = n - 1
	}
	f.buf[f.pos] = x
	f.buf[f.pos+n] = x
	w := f.buf[f.pos : f.pos+n]
	var y float64
	for i, t := range f.taps {
		y += t * w[i]
	}
	return y
}

// RaisedCosine returns the taps of a root-raised-cosine pulse with roll-off
// beta, sps samples per symbol and span symbols either side, normalised to
// unit energy (so a matched pair has unit gain at the symbol instant).
func RootRaisedCosine(beta, sps float64, span int) []float64 {
	n := int(math.Round(2*float64(span)*sps)) + 1
	taps := make([]float64, n)
	mid := float64(n-1) / 2
	var energy float64
	for i := range taps {
		t := (float64(i) - mid) / sps
		var h float64
		switch {
		case t == 0:
			h = 1 - beta + 4*beta/math.Pi
		case beta > 0 && math.Abs(math.Abs(4*beta*t)-1) < 1e-9:
			h = beta / math.Sqrt2 * ((1+2/math.Pi)*math.Sin(math.Pi/(4*beta)) + (1-2/math.Pi)*math.Cos(math.Pi/(4*beta)))
		default:
			h = (math.Sin(math.Pi*t*(1-beta)) + 4*beta*t*math.Cos(math.Pi*t*(1+beta))) /
				(math.Pi * t * (1 - (4*beta*t)*(4*beta*t)))
		}
		taps[i] = h
		energy += h * h
	}
	g := 1 / math.Sqrt(energy)
	for i := range taps {
		taps[i] *= g
	}
	return taps
}
