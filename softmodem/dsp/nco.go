package dsp

import "math"

const (
	sinBits = 12
	sinSize = 1 << sinBits
)

// sinTab holds one period of sine plus a guard entry for interpolation.
var sinTab [sinSize + 1]float64

func init() {
	for i := range sinTab {
		sinTab[i] = math.Sin(2 * math.Pi * float64(i) / sinSize)
	}
}

// lookup returns sin of a 32-bit phase (a full turn is 2^32), linearly
// interpolated between table entries: the error is below 1e-6, far under
// the G.711 quantisation noise.
func lookup(phase uint32) float64 {
	i := phase >> (32 - sinBits)
	f := float64(phase&(1<<(32-sinBits)-1)) * (1.0 / (1 << (32 - sinBits)))
	a := sinTab[i]
	return a + (sinTab[i+1]-a)*f
}

// Sin returns sin(2π·phase/2^32).
func Sin(phase uint32) float64 { return lookup(phase) }

// Cos returns cos(2π·phase/2^32).
func Cos(phase uint32) float64 { return lookup(phase + 1<<30) }

// PhaseStep is the per-sample phase increment of a tone of hz Hz.
func PhaseStep(hz float64) int32 {
	return int32(int64(math.Round(hz / SampleRate * (1 << 32))))
}

// NCO is a numerically controlled oscillator: a 32-bit phase accumulator
// whose wrap-around is the 2π wrap, so it never loses precision over a
// long call.
type NCO struct {
	Phase uint32
	Step  int32
}

// NewNCO returns an oscillator at hz Hz starting at phase 0.
func NewNCO(hz float64) NCO { return NCO{Step: PhaseStep(hz)} }

// SetFreq changes the frequency keeping the phase (continuous phase).
func (n *NCO) SetFreq(hz float64) { n.Step = PhaseStep(hz) }

// Next returns cos and sin of the current phase and advances it.
func (n *NCO) Next() (c, s float64) {
	c, s = Cos(n.Phase), Sin(n.Phase)
	n.Phase += uint32(n.Step)
	return c, s
}

// Advance moves the phase by delta radians (a phase-locked loop's correction
// or a V.25 phase reversal).
func (n *NCO) Advance(delta float64) {
	n.Phase += uint32(int64(math.Round(delta / (2 * math.Pi) * (1 << 32))))
}
