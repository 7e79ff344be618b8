// Package dsp holds the signal-processing primitives the modems share:
// a numerically controlled oscillator, biquad and FIR filters, the
// Goertzel tone detector, a power meter and AGC, and the impairments the
// tests apply to a line (white noise, sample-clock offset).
//
// Everything runs at the telephone rate, SampleRate samples per second,
// on float64 samples scaled like 16-bit linear PCM.
package dsp

import "math"

// SampleRate is the sample rate of every signal in the modem.
const SampleRate = 8000

// DBm0 converts a level in dBm0 to the RMS value of a 16-bit linear
// signal. G.711's digital milliwatt (a 0 dBm0 sine) has a peak of 22 706
// at 16-bit scale (G.711 Table 5/6), so its RMS is 22 706/√2.
func DBm0(level float64) float64 {
	return 22706 / math.Sqrt2 * math.Pow(10, level/20)
}

// ToDBm0 converts an RMS value of a 16-bit linear signal to dBm0.
func ToDBm0(rms float64) float64 {
	if rms <= 0 {
		return -100
	}
	return 20 * math.Log10(rms/(22706/math.Sqrt2))
}

// Clip16 rounds x to the nearest int16, saturating.
func Clip16(x float64) int16 {
	switch {
	case x >= 32767:
		return 32767
	case x <= -32768:
		return -32768
	case x >= 0:
		return int16(x + 0.5)
	default:
		return int16(x - 0.5)
	}
}
