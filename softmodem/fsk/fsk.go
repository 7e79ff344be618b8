// Package fsk is a 300 bit/s frequency-shift-keying modem: ITU-T V.21's two
// channels and the Bell 103 pair. A binary 1 is the mark frequency, 0 the
// space frequency, with continuous phase across bits (V.21 §2, Bell 103).
//
// The receiver is non-coherent: over a sliding window of one bit it
// correlates the signal with both tones, compares the two energies, and a
// digital phase-locked loop finds the bit centres from the transitions.
package fsk

import (
	"math"

	"github.com/isp-box/isp-box/softmodem/dsp"
)

// Spec is one FSK channel.
type Spec struct {
	Name  string
	Mark  float64 // Hz, binary 1
	Space float64 // Hz, binary 0
	Baud  float64
}

// The channels of ITU-T V.21 §2 (channel 1 is the calling modem's
// transmitter) and of the Bell 103 (originate transmits 1270/1070 Hz,
// answer 2225/2025 Hz).
var (
	V21Ch1      = Spec{Name: "V.21 ch1", Mark: 980, Space: 1180, Baud: 300}
	V21Ch2      = Spec{Name: "V.21 ch2", Mark: 1650, Space: 1850, Baud: 300}
	Bell103Orig = Spec{Name: "Bell 103 originate", Mark: 1270, Space: 1070, Baud: 300}
	Bell103Ans  = Spec{Name: "Bell 103 answer", Mark: 2225, Space: 2025, Baud: 300}
)

// DefaultLevel is the transmit level: -13 dBm0, within V.21's and the
// usual PSTN data limit of -9 dBm0 average.
var DefaultLevel = dsp.DBm0(-13)

// Tx modulates bits into audio.
type Tx struct {
	spec      Spec
	nco       dsp.NCO
	mark, spc int32
	amp       float64
	getBit    func() int
	spb, acc  float64
	started   bool
}

// NewTx returns a modulator pulling bits from getBit (which returns 0 or
// 1; an idle line is 1, mark) at level rms.
func NewTx(spec Spec, rms float64, getBit func() int) *Tx {
	return &Tx{
		spec: spec, mark: dsp.PhaseStep(spec.Mark), spc: dsp.PhaseStep(spec.Space),
		amp: rms * math.Sqrt2, getBit: getBit, spb: dsp.SampleRate / spec.Baud,
	}
}

// Modulate fills out with the next samples.
func (t *Tx) Modulate(out []float64) {
	for i := range out {
		if !t.started || t.acc >= t.spb {
			if t.started {
				t.acc -= t.spb
			}
			t.started = true
			if t.getBit()&1 == 1 {
				t.nco.Step = t.mark
			} else {
				t.nco.Step = t.spc
			}
		}
		t.acc++
		_, s := t.nco.Next()
		out[i] = s * t.amp
	}
}

// Carrier-detect thresholds of V.21 §7 (on above -43 dBm, off below -48).
var (
	onLevel  = dsp.DBm0(-43)
	offLevel = dsp.DBm0(-48)
)

// Rx demodulates audio into bits.
type Rx struct {
	spec   Spec
	putBit func(bit int)
	// OnCarrier, if set, is called when carrier detect changes.
	OnCarrier func(on bool)

	pre    dsp.Cascade
	ncoM   dsp.NCO
	ncoS   dsp.NCO
	n      int
	ring   []complex128 // mark then space products, per slot
	pos    int
	sumM   complex128
	sumS   complex128
	marks  float64 // decision smoothed over about 6 bits: near 1 on a steady mark
	power  dsp.PowerMeter
	dcd    bool
	last   float64
	phase  float64 // bit phase, fraction of a bit; sample at the wrap
	step   float64
	locked int
}

// NewRx returns a demodulator calling putBit for every received bit while
// the carrier is present.
func NewRx(spec Spec, putBit func(bit int)) *Rx {
	n := int(math.Round(dsp.SampleRate / spec.Baud))
	centre := (spec.Mark + spec.Space) / 2
	return &Rx{
		spec: spec, putBit: putBit,
		pre:   dsp.Cascade{dsp.BandPass(centre, 2), dsp.BandPass(centre, 2)},
		ncoM:  dsp.NewNCO(spec.Mark),
		ncoS:  dsp.NewNCO(spec.Space),
		n:     n,
		ring:  make([]complex128, 2*n),
		power: dsp.NewPowerMeter(0.010),
		step:  spec.Baud / dsp.SampleRate,
	}
}

// Carrier reports whether a signal is present in the receive band.
func (r *Rx) Carrier() bool { return r.dcd }

// Marking reports a steady mark (binary 1s) in the band: the idle carrier
// a modem sends before data. Noise or another tone in the band has a
// level and so raises Carrier, but not this.
func (r *Rx) Marking() bool { return r.dcd && r.marks > 0.6 }

// Demodulate consumes samples.
func (r *Rx) Demodulate(in []float64) {
	for _, x := range in {
		x = r.pre.Filter(x)
		p := r.power.Push(x)
		cm, sm := r.ncoM.Next()
		cs, ss := r.ncoS.Next()
		pm := complex(x*cm, -x*sm)
		ps := complex(x*cs, -x*ss)
		i := 2 * r.pos
		r.sumM += pm - r.ring[i]
		r.sumS += ps - r.ring[i+1]
		r.ring[i], r.ring[i+1] = pm, ps
		if r.pos++; r.pos == r.n {
			r.pos = 0
		}
		em := real(r.sumM)*real(r.sumM) + imag(r.sumM)*imag(r.sumM)
		es := real(r.sumS)*real(r.sumS) + imag(r.sumS)*imag(r.sumS)
		d := (em - es) / (em + es + 1e-9)
		r.marks += 0.005 * (d - r.marks)
		switch {
		case !r.dcd && p > onLevel*onLevel:
			r.dcd = true
			r.locked = 0
			if r.OnCarrier != nil {
				r.OnCarrier(true)
			}
		case r.dcd && p < offLevel*offLevel:
			r.dcd = false
			if r.OnCarrier != nil {
				r.OnCarrier(false)
			}
		}
		if !r.dcd {
			r.last = d
			continue
		}
		// A change of decision happens half a window (half a bit) after
		// the bit boundary; the window is wholly inside the new bit half
		// a bit later still. So a transition should see phase 0.5, and the
		// bit is sampled at the wrap.
		if (d >= 0) != (r.last >= 0) {
			err := r.phase - 0.5
			gain := 0.25
			if r.locked < 8 {
				gain = 0.8
				r.locked++
			}
			r.phase -= gain * err
		}
		r.last = d
		r.phase += r.step
		if r.phase >= 1 {
			r.phase--
			bit := 0
			if d >= 0 {
				bit = 1
			}
			r.putBit(bit)
		}
	}
}
