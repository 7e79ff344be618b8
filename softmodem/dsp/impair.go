package dsp

import (
	"math"
	"math/rand/v2"
)

// Noise adds white Gaussian noise at a fixed RMS level, reproducibly from a
// seed.
type Noise struct {
	rng *rand.Rand
	RMS float64
}

// NewNoise returns a generator of the given RMS with a fixed seed.
func NewNoise(rms float64, seed uint64) *Noise {
	return &Noise{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), RMS: rms}
}

// Sample returns one noise sample.
func (n *Noise) Sample() float64 { return n.rng.NormFloat64() * n.RMS }

// NoiseForSNR is the noise RMS giving snr dB against a signal of
// signalRMS.
func NoiseForSNR(signalRMS, snr float64) float64 {
	return signalRMS / math.Pow(10, snr/20)
}

// Resampler converts a stream sampled by one clock to the same stream as
// sampled by a clock ppm parts per million faster (positive) or slower,
// with a windowed-sinc interpolator: what a far end's unsynchronised A/D
// converter does to a modem signal. It keeps fractional state across
// calls, so it can run on blocks.
type Resampler struct {
	step float64 // input samples per output sample
	pos  float64 // position of the next output in hist coordinates
	hist []float64
}

const (
	rsHalf   = 16  // taps either side
	rsPhases = 512 // table resolution
)

var rsTable = func() [][]float64 {
	t := make([][]float64, rsPhases+1)
	for p := range t {
		frac := float64(p) / rsPhases
		row := make([]float64, 2*rsHalf)
		for k := range row {
			x := float64(k-rsHalf+1) - frac
			// Blackman-windowed sinc at 0.45 of the sample rate.
			w := 0.42 + 0.5*math.Cos(math.Pi*x/rsHalf) + 0.08*math.Cos(2*math.Pi*x/rsHalf)
			if math.Abs(x) >= rsHalf {
				w = 0
			}
			s := 0.9
			if x != 0 {
				s = math.Sin(0.9*math.Pi*x) / (math.Pi * x)
			}
			row[k] = s * w
		}
		t[p] = row
	}
	return t
}()

// NewResampler returns a resampler for a clock offset of ppm.
func NewResampler(ppm float64) *Resampler {
	return &Resampler{step: 1 / (1 + ppm*1e-6), pos: rsHalf - 1, hist: make([]float64, 2*rsHalf)}
}

// Process appends the resampled version of in to out and returns it.
func (r *Resampler) Process(out []float64, in []float64) []float64 {
	r.hist = append(r.hist, in...)
	for r.pos+rsHalf < float64(len(r.hist)) {
		i := int(r.pos)
		frac := r.pos - float64(i)
		p := frac * rsPhases
		pi := int(p)
		pf := p - float64(pi)
		a, b := rsTable[pi], rsTable[pi+1]
		var y float64
		base := i - rsHalf + 1
		for k := 0; k < 2*rsHalf; k++ {
			y += r.hist[base+k] * (a[k] + (b[k]-a[k])*pf)
		}
		out = append(out, y)
		r.pos += r.step
	}
	// Drop history no longer needed.
	if drop := int(r.pos) - rsHalf; drop > 4096 {
		r.hist = append(r.hist[:0], r.hist[drop:]...)
		r.pos -= float64(drop)
	}
	return out
}
