// Package tones generates and detects the ITU-T V.25 answer tone: 2100 Hz
// (±15 Hz) for 3.3 s (±0.7 s), optionally with a 180° phase reversal every
// 450 ms (±25 ms, V.25 §5.2.2) which tells network echo cancellers to
// disable themselves.
package tones

import (
	"math"
	"math/cmplx"

	"github.com/isp-box/isp-box/softmodem/dsp"
)

// ANS timing of V.25 §5.2.
const (
	ANSFreq         = 2100.0
	ANSDuration     = 3300 // ms
	ReversalPeriod  = 450  // ms
	BillingDelay    = 2000 // ms of silence before ANS (V.25 §5.2.1: 1.8–2.5 s)
	PostANSSilence  = 75   // ms between ANS and the data carrier (V.25 §5.2.3)
	ansDetectMillis = 150  // tone must last this long to count
)

// ANSGenerator produces the answer tone.
type ANSGenerator struct {
	nco       dsp.NCO
	amp       float64
	reversals bool
	n, period int
}

// NewANS returns a generator at level rms, with phase reversals (/ANS) if
// reversals is set.
func NewANS(rms float64, reversals bool) *ANSGenerator {
	return &ANSGenerator{
		nco: dsp.NewNCO(ANSFreq), amp: rms * math.Sqrt2, reversals: reversals,
		period: ReversalPeriod * dsp.SampleRate / 1000,
	}
}

// Generate fills out with the tone.
func (g *ANSGenerator) Generate(out []float64) {
	for i := range out {
		if g.reversals && g.n > 0 && g.n%g.period == 0 {
			g.nco.Phase += 1 << 31
		}
		g.n++
		_, s := g.nco.Next()
		out[i] = s * g.amp
	}
}

// ANSDetector recognises the answer tone and counts its phase reversals.
type ANSDetector struct {
	nco      dsp.NCO
	acc      complex128
	energy   float64
	k        int
	hist     [3]complex128 // correlations of the last blocks, newest first
	present  int           // consecutive blocks with the tone
	miss     int
	sinceRev int
	drift    float64 // mean phase step per block (frequency offset)

	// Detected turns true once the tone lasted 150 ms; Reversals counts
	// the phase reversals seen since; Present is true while it lasts.
	Detected  bool
	Present   bool
	Reversals int
}

const ansBlock = 80 // 10 ms: 2100 Hz is 21 whole cycles, so the phase stands still

// NewANSDetector returns a detector.
func NewANSDetector() *ANSDetector { return &ANSDetector{nco: dsp.NewNCO(ANSFreq)} }

// Push consumes samples.
func (d *ANSDetector) Push(in []float64) {
	for _, x := range in {
		c, s := d.nco.Next()
		d.acc += complex(x*c, -x*s)
		d.energy += x * x
		if d.k++; d.k < ansBlock {
			continue
		}
		d.block()
		d.k, d.acc, d.energy = 0, 0, 0
	}
}

func (d *ANSDetector) block() {
	// The share of the block's energy at 2100 Hz: 1 for a pure tone.
	mag2 := real(d.acc)*real(d.acc) + imag(d.acc)*imag(d.acc)
	ratio := 2 * mag2 / (float64(ansBlock) * d.energy)
	level := d.energy / ansBlock
	tone := ratio > 0.6 && level > dsp.DBm0(-43)*dsp.DBm0(-43)
	d.hist[2], d.hist[1], d.hist[0] = d.hist[1], d.hist[0], d.acc
	d.sinceRev++
	if !tone {
		// A reversal's block holds two opposite halves and a weak
		// correlation: one such block does not end the tone.
		if d.miss++; d.miss >= 2 {
			d.present = 0
			d.Present = false
		}
		return
	}
	d.miss = 0
	d.present++
	if d.present*10 >= ansDetectMillis {
		d.Detected = true
		d.Present = true
	}
	if d.present < 3 || d.hist[2] == 0 {
		return
	}
	// Phase change over two blocks, less twice the drift of a 2100 Hz
	// tone that is a little off frequency.
	step := cmplx.Phase(d.hist[0] * cmplx.Conj(d.hist[2]))
	dev := math.Remainder(step-2*d.drift, 2*math.Pi)
	if math.Abs(dev) > 2*math.Pi/3 && d.sinceRev > 20 {
		d.Reversals++
		d.sinceRev = 0
		return
	}
	if d.sinceRev > 3 {
		d.drift += 0.2 * (step/2 - d.drift)
	}
}
