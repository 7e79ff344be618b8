package dsp

import "math"

// PowerMeter tracks the mean-square level of a signal with a one-pole
// smoother of time constant tau seconds.
type PowerMeter struct {
	alpha float64
	P     float64
}

// NewPowerMeter returns a meter with the given time constant.
func NewPowerMeter(tau float64) PowerMeter {
	return PowerMeter{alpha: 1 - math.Exp(-1/(tau*SampleRate))}
}

// Push feeds one sample and returns the current mean-square level.
func (m *PowerMeter) Push(x float64) float64 {
	m.P += m.alpha * (x*x - m.P)
	return m.P
}

// DBm0 is the current level in dBm0.
func (m *PowerMeter) DBm0() float64 { return ToDBm0(math.Sqrt(m.P)) }

// AGC scales a signal towards a target RMS level. It adapts slowly (its
// power meter's time constant) so it does not follow the modulation.
type AGC struct {
	meter  PowerMeter
	target float64
	Gain   float64
	floor  float64
}

// NewAGC returns an AGC aiming at the target RMS, ignoring signals below
// floor RMS (silence is not amplified into noise).
func NewAGC(target, floor, tau float64) *AGC {
	return &AGC{meter: NewPowerMeter(tau), target: target, Gain: 1, floor: floor}
}

// Push scales x and returns it.
func (a *AGC) Push(x float64) float64 {
	p := a.meter.Push(x)
	if p > a.floor*a.floor {
		a.Gain = a.target / math.Sqrt(p)
	}
	return x * a.Gain
}
