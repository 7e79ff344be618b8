// Package v22 is the ITU-T V.22 (1200 bit/s, 4-phase) and V.22bis
// (2400 bit/s, 16-QAM) modem: 600 baud on a 1200 Hz (calling) or 2400 Hz
// (answering) carrier, root-raised-cosine shaping with 75% roll-off
// (V.22 §2.4), differential quadrant coding and the 1 + x^-14 + x^-17
// self-synchronising scrambler (V.22 §5), and the V.22bis §6.3.1
// handshake: unscrambled ones, S1 for rate agreement, scrambled ones.
//
// The receiver mixes to baseband, interpolates the matched-filtered
// signal at half-symbol instants placed by a Gardner timing loop, runs a
// T/2-spaced LMS equaliser, and tracks the carrier phase with a
// decision-directed loop.
package v22

import (
	"math"

	"github.com/isp-box/isp-box/softmodem/dsp"
)

const (
	baud         = 600
	spsNum       = 40 // samples per symbol = spsNum/spsDen = 13.33
	spsDen       = 3
	lowCarrier   = 1200.0
	highCarrier  = 2400.0
	rolloff      = 0.75
	txSpan       = 8 // symbols of transmit pulse
	rxHalfSpan   = 4 // symbols either side of the receive filter
	rxTabRes     = 64
	eqLen        = 15 // T/2 taps
	eqCentre     = 7
	targetPower  = 10.0 // mean |point|² of the V.22bis constellation and of the 1200 bit/s points
	symbolsPerMS = 0.6
)

// matchedFilterGain is how much better the SNR at the decision point
// is than the line's for white noise: the matched filter's noise
// bandwidth is the symbol rate (600 Hz) of the 4000 Hz the noise fills
// at 8 kHz sampling, 10·log10(4000/600) = 8.24 dB.
var matchedFilterGain = 10 * math.Log10(dsp.SampleRate/2/baud)

func msToSymbols(ms int) int { return ms * baud / 1000 }

// constellation is indexed by quadrant<<2 | the two in-quadrant bits
// (V.22bis Figure 2): quadrant 0's points rotated by 90° for each
// quadrant. At 1200 bit/s only the bits-01 point of each quadrant is sent.
var constellation = func() [16]complex128 {
	q0 := [4]complex128{complex(1, 1), complex(3, 1), complex(1, 3), complex(3, 3)}
	var c [16]complex128
	rot := complex(1, 0)
	for q := 0; q < 4; q++ {
		for b := 0; b < 4; b++ {
			c[q<<2|b] = q0[b] * rot
		}
		rot *= complex(0, 1)
	}
	return c
}()

// phaseStep maps a dibit (first bit as the high bit) to a quadrant change
// in quarter turns (V.22 Table 1: 00 → 90°, 01 → 0°, 10 → 180°, 11 → 270°);
// dibitOf is its inverse.
var (
	phaseStep = [4]int{1, 0, 2, 3}
	dibitOf   = [4]int{1, 0, 2, 3}
)

// rrc is the root-raised-cosine impulse response at t symbols.
func rrc(t float64) float64 {
	b := rolloff
	switch {
	case t == 0:
		return 1 - b + 4*b/math.Pi
	case math.Abs(math.Abs(4*b*t)-1) < 1e-9:
		return b / math.Sqrt2 * ((1+2/math.Pi)*math.Sin(math.Pi/(4*b)) + (1-2/math.Pi)*math.Cos(math.Pi/(4*b)))
	}
	return (math.Sin(math.Pi*t*(1-b)) + 4*b*t*math.Cos(math.Pi*t*(1+b))) / (math.Pi * t * (1 - 16*b*b*t*t))
}

// txPulse is the shaping filter at 3 × 8000 Hz (40 samples a symbol), so
// every 8 kHz output sample falls on one of its phases.
var txPulse = func() []float64 {
	n := txSpan * spsNum
	h := make([]float64, n)
	var e float64
	for i := range h {
		h[i] = rrc((float64(i) - float64(n)/2) / spsNum)
		e += h[i] * h[i]
	}
	// Σh² = 40: the baseband signal's power is the symbols' mean power.
	g := math.Sqrt(spsNum / e)
	for i := range h {
		h[i] *= g
	}
	return h
}()

// rxHalfLen is the receive filter's half length in 8 kHz samples.
var rxHalfLen = int(math.Ceil(rxHalfSpan * spsNum / spsDen))

// rxPulse is the matched filter sampled every 1/rxTabRes of a sample.
var rxPulse = func() []float64 {
	n := 2*rxHalfLen*rxTabRes + 1
	h := make([]float64, n)
	sps := float64(spsNum) / spsDen
	for i := range h {
		t := float64(i-rxHalfLen*rxTabRes) / rxTabRes / sps
		h[i] = rrc(t) / sps
	}
	return h
}()

// scrambler is V.22 §5.1's: out = in ⊕ out(-14) ⊕ out(-17), and after
// 64 consecutive ones on the line the next input bit is inverted so a
// continuous one pattern cannot persist.
type scrambler struct {
	reg  uint32
	ones int
}

func (s *scrambler) scramble(bit int) int {
	if s.ones >= 64 {
		bit ^= 1
		s.ones = 0
	}
	out := (bit ^ int(s.reg>>13) ^ int(s.reg>>16)) & 1
	s.reg = s.reg<<1 | uint32(out)
	if out == 1 {
		s.ones++
	} else {
		s.ones = 0
	}
	return out
}

// descramble is the receiving side (V.22 §5.2).
func (s *scrambler) descramble(bit int) int {
	bit &= 1
	out := (bit ^ int(s.reg>>13) ^ int(s.reg>>16)) & 1
	s.reg = s.reg<<1 | uint32(bit)
	if s.ones >= 64 {
		out ^= 1
		s.ones = 0
	}
	if bit == 1 {
		s.ones++
	} else {
		s.ones = 0
	}
	return out
}

// Levels for carrier detect (V.22 §4: on above -43 dBm0, off below -48).
var (
	onPower  = dsp.DBm0(-43) * dsp.DBm0(-43)
	offPower = dsp.DBm0(-48) * dsp.DBm0(-48)
)
