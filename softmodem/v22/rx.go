package v22

import (
	"math"
	"math/cmplx"
)

const (
	// holeFraction: an equaliser window with less than this share of the
	// signal's power holds part of a hole (lost packets).
	holeFraction = 0.3
	halfStep     = float64(spsNum) / spsDen / 2 // samples per half symbol
	carrierHold  = 400 * 8                      // samples of silence before carrier off
)

func (p *Pump) resetRx() {
	p.setRx(rxIdle)
	p.eqTaps = [eqLen]complex128{}
	p.eqTaps[eqCentre] = 1
	p.eqBuf = [eqLen]complex128{}
	p.phase, p.freq = 0, 0
	p.agc, p.agcAcc, p.agcN = 0, 0, 0
	p.sixteen = false
	p.mse = 0
	p.tNext = float64(p.n) + halfStep
	p.half = 0
}

// Demodulate consumes received samples.
func (p *Pump) Demodulate(in []float64) {
	mask := int64(len(p.bb) - 1)
	for _, x := range in {
		pw := p.power.Push(p.band.Filter(x))
		switch {
		case !p.dcd && pw > onPower:
			p.dcd = true
			p.resetRx()
			p.setRx(rxAcquire)
		case p.dcd && pw < offPower:
			// A hole of a few lost packets is not the end of the
			// carrier: hold on (without adapting) for carrierHold.
			if p.quiet++; p.quiet >= carrierHold {
				p.dcd = false
				p.quiet = 0
				// A call that was in data and loses the carrier for a
				// while (a burst of lost packets) comes back with a
				// retrain, not the call's handshake: the far end is still
				// in data and will not send it again.
				p.wasData = p.wasData || p.rx == rxData || p.retraining
				p.setRx(rxIdle)
				p.dataUp = false
			}
		case p.dcd:
			p.quiet = 0
		}
		c, s := p.rxCarrier.Next()
		p.bb[p.n&mask] = complex(x*c, -x*s)
		p.n++
		if !p.dcd {
			p.tNext = float64(p.n) + halfStep
			continue
		}
		// A half-symbol sample is due once the filter's whole span
		// around it has arrived.
		for p.tNext+float64(rxHalfLen)+1 < float64(p.n) {
			p.halfSymbol(p.interpolate(p.tNext))
		}
	}
}

// interpolate is the matched filter's output at time t (in samples).
func (p *Pump) interpolate(t float64) complex128 {
	mask := int64(len(p.bb) - 1)
	first := int64(math.Ceil(t)) - int64(rxHalfLen)
	var re, im float64
	// Offset of sample 'first' from t, in table steps.
	off := (t-float64(first))*rxTabRes + 0.5
	for i := int64(0); i < int64(2*rxHalfLen); i++ {
		idx := int(off) - int(i)*rxTabRes + rxHalfLen*rxTabRes
		if idx < 0 || idx >= len(rxPulse) {
			continue
		}
		h := rxPulse[idx]
		v := p.bb[(first+i)&mask]
		re += real(v) * h
		im += imag(v) * h
	}
	return complex(re, im)
}

func (p *Pump) halfSymbol(y complex128) {
	p.tNext += halfStep
	// Equaliser delay line at T/2.
	copy(p.eqBuf[1:], p.eqBuf[:eqLen-1])
	p.eqBuf[0] = y
	p.ySyms[0], p.ySyms[1] = p.ySyms[1], p.ySyms[2]
	p.ySyms[2] = y
	if p.half ^= 1; p.half == 1 {
		return
	}
	p.symbol()
}

// gardner moves the sampling instants: the mid-symbol sample of a
// transition is zero when timing is right, and its sign against the
// transition's direction says early or late.
func (p *Pump) gardner(gain float64) {
	prev, mid, cur := p.ySyms[0], p.ySyms[1], p.ySyms[2]
	e := real(mid)*(real(prev)-real(cur)) + imag(mid)*(imag(prev)-imag(cur))
	norm := p.agc * p.agc
	if norm == 0 {
		return
	}
	adj := gain * e * norm / targetPower
	adj = max(-0.5, min(0.5, adj))
	p.tNext -= adj
	p.timingAcc -= adj
}

func (p *Pump) symbol() {
	p.rxCount++
	// Gain: the symbol samples' mean power, brought to targetPower.
	cur := p.ySyms[2]
	if p.rx == rxAcquire {
		p.agcAcc += real(cur)*real(cur) + imag(cur)*imag(cur)
		p.agcN++
		if p.agcAcc == 0 {
			return
		}
		p.pow = p.agcAcc / float64(p.agcN)
		p.agc = math.Sqrt(targetPower / p.pow)
		gain := 0.08
		if p.rxCount > 20 {
			gain = 0.03
		}
		p.gardner(gain)
		if p.rxCount >= 40 {
			if p.wasData && p.maxRate >= 2400 {
				p.wasData = false
				p.startRetrain()
				return
			}
			if p.caller && p.rx == rxAcquire {
				p.setRx(rxU11)
			} else {
				p.setRx(rxS11)
			}
			p.rate = 1200
		}
		return
	}
	// In a hole (lost packets) nothing adapts: the gain, timing and
	// equaliser would only learn the silence. The carrier detector sees a
	// hole only once its power meter has decayed; the equaliser's own
	// window sees it at once, and sees the signal's edges around it.
	var energy float64
	for _, x := range p.eqBuf {
		energy += real(x)*real(x) + imag(x)*imag(x)
	}
	frozen := p.quiet > 0 || (p.pow > 0 && energy < holeFraction*eqLen*p.pow)
	// The gain follows the level slowly (the far carrier may start
	// louder than the noise the receiver first settled on). Once data
	// flows in 16-QAM the points' power varies from 2 to 18 symbol by
	// symbol: a fast average then jitters the gain by ~2 %, a noise floor
	// near 32 dB that the equaliser cannot follow, so the gain only
	// drifts there (a time constant of ~17 s); the equaliser takes up
	// the rest. Until then (the handshake, a retrain) it follows fast, so
	// a retrain after a bad stretch starts from the right level.
	if !frozen {
		rate := 0.01
		if p.sixteen && p.rx == rxData {
			rate = 0.0001
		}
		p.pow += rate * (real(cur)*real(cur) + imag(cur)*imag(cur) - p.pow)
	}
	if p.pow > 0 {
		p.agc = math.Sqrt(targetPower / p.pow)
	}
	if !frozen {
		p.gardner(0.005)
	}

	// Equaliser.
	var z complex128
	for i, t := range p.eqTaps {
		z += t * p.eqBuf[i]
	}
	z *= complex(p.agc, 0)
	rot := complex(math.Cos(p.phase), -math.Sin(p.phase))
	zr := z * rot
	nearest := p.slice(zr)
	target := constellation[nearest]
	// Carrier phase: a second-order decision-directed loop. Only the
	// sample clocks' offset moves the carrier on a digital path, so the
	// frequency term stays small.
	perr := imag(zr*cmplx.Conj(target)) / targetPower
	if !frozen {
		p.freq = max(-0.01, min(0.01, p.freq+0.0005*perr))
		p.phase = math.Remainder(p.phase+0.05*perr+p.freq, 2*math.Pi)
	}
	// Normalised LMS, with the error taken back to the equaliser's frame.
	d := target - zr
	if !frozen { // a hole is counted as RTP loss, not as line noise
		p.mse += 0.01 * (real(d)*real(d) + imag(d)*imag(d) - p.mse)
	}
	mu := 0.05
	if p.rx == rxData {
		mu = 0.02
	}
	if energy > 0 && !frozen {
		g := complex(mu/(energy*p.agc), 0) * d * cmplx.Conj(rot)
		for i := range p.eqTaps {
			p.eqTaps[i] += g * cmplx.Conj(p.eqBuf[i])
		}
	}

	raw := dibitOf[(nearest>>2-p.rxQuad)&3]
	p.rxQuad = nearest >> 2
	p.handshake(raw, nearest)
	p.lastRaw = raw
}

// slice returns the nearest constellation point's index: 16 points with
// 16-way decisions, else the four 1200 bit/s points.
func (p *Pump) slice(z complex128) int {
	q := 0
	switch {
	case real(z) >= 0 && imag(z) >= 0:
		q = 0
	case real(z) < 0 && imag(z) >= 0:
		q = 1
	case real(z) < 0:
		q = 2
	default:
		q = 3
	}
	if !p.sixteen {
		// The four points sit 18.4° past each axis: slice on the
		// sectors between them, not on the axes.
		a := math.Atan2(imag(z), real(z)) - math.Atan2(1, 3)
		q = int(math.Floor(a/(math.Pi/2)+0.5)) & 3
		return q<<2 | 1
	}
	// Back into quadrant 0, then the two in-quadrant bits.
	w := z
	for i := 0; i < q; i++ {
		w *= complex(0, -1)
	}
	b := 0
	if real(w) > 2 {
		b |= 1
	}
	if imag(w) > 2 {
		b |= 2
	}
	return q<<2 | b
}

func (p *Pump) deliver(raw, nearest int, data bool) int {
	bits := p.rxScr.descramble(raw>>1)<<1 | p.rxScr.descramble(raw)
	n := 2
	if p.sixteen {
		bits = bits<<1 | p.rxScr.descramble((nearest>>1)&1)
		bits = bits<<1 | p.rxScr.descramble(nearest&1)
		n = 4
	}
	if data {
		for i := n - 1; i >= 0; i-- {
			p.putBit(bits >> i & 1)
		}
	}
	return bits
}

// isS1 tracks the S1 pattern: dibits alternating 00 and 11 unscrambled.
func (p *Pump) isS1(raw int) (ended int) {
	if p.lastRaw^raw == 3 {
		p.repeats++
		return 0
	}
	n := p.repeats
	p.repeats = 0
	if p.lastRaw == 3 || p.lastRaw == 0 {
		return n
	}
	return 0
}

// handshake is V.22bis §6.3.1 from the receiver's side.
func (p *Pump) handshake(raw, nearest int) {
	switch p.rx {
	case rxU11:
		if raw == p.lastRaw && (raw == 3 || raw == 0) {
			p.repeats++
		} else {
			p.repeats = 0
		}
		// 155 ms to qualify plus 456 ms of steady unscrambled ones, then
		// S1 (to ask for 2400) or straight to scrambled ones. The count
		// restarts on any other dibit, so noise before the answerer's
		// carrier does not use up the time.
		if p.repeats >= msToSymbols(155+456) {
			if p.maxRate >= 2400 {
				p.setTx(txS1, 0)
			} else {
				p.setTx(txS11, 0)
			}
			p.setRx(rxU11Sustain)
		}
	case rxU11Sustain:
		if raw != p.lastRaw {
			// The answerer stopped its unscrambled ones: S1 or
			// scrambled ones follow.
			p.setTx(txTimedS11, 0)
			p.setRx(rxS11)
		}
	case rxS11:
		ones := p.deliver(raw, nearest, false) == 3
		if p.rate == 1200 {
			if n := p.isS1(raw); n >= 15 && p.maxRate >= 2400 {
				if !p.caller {
					p.setTx(txS1, 0)
				}
				p.rate = 2400
				p.rxCount = 0
				return
			}
			// Scrambled ones, not just any signal (noise on a quiet line
			// raises carrier detect too), for 270 ms.
			if ones {
				p.s11Run++
			} else {
				p.s11Run = 0
			}
			if p.s11Run >= msToSymbols(270) {
				// No S1: V.22 at 1200 bit/s.
				p.setTx(txTimedS11, 0)
				if p.caller {
					p.setRx(rxData)
				} else {
					p.setRx(rxS11Sustain)
				}
			}
			return
		}
		// 16-way decisions 450 ms after the end of S1 (V.22bis
		// §6.3.1.1.1 d, §6.3.1.1.2 c).
		wait := msToSymbols(450)
		if p.rxCount >= wait {
			p.sixteen = true
			p.setRx(rxWaitOnes2400)
		}
	case rxS11Sustain:
		p.deliver(raw, nearest, false)
		if p.rxCount > msToSymbols(765) {
			p.setRx(rxData)
		}
	case rxWaitOnes2400:
		if p.deliver(raw, nearest, false) == 0xF {
			if p.repeats++; p.repeats >= 8 {
				p.setRx(rxData)
			}
		} else {
			p.repeats = 0
		}
		// The far end's 2400 bit/s ones never came through (a retrain
		// that went wrong under a burst of loss): ask for another one
		// rather than wait on a dead call.
		if p.rxCount > msToSymbols(3000) && p.maxRate >= 2400 {
			p.startRetrain()
			p.eqTaps = [eqLen]complex128{}
			p.eqTaps[eqCentre] = 1
		}
	case rxData:
		// A retrain request is a long S1 in the middle of data.
		if n := p.isS1(raw); n >= 50 && p.maxRate >= 2400 {
			p.startRetrain()
			return
		}
		p.deliver(raw, nearest, true)
		// The receiver lost the signal (a lost packet, a slip of the far
		// clock, a false lock of the carrier loop after a phase jump,
		// where 16-QAM decisions sit near 13 dB): ask for a retrain after
		// a second below 13 dB at the decision point (5 dB on the line).
		// A single lost packet dips below that for less (no retrain).
		if p.mse > targetPower/20 && p.quiet == 0 {
			p.badRun++
		} else {
			p.badRun = 0
		}
		if p.badRun > msToSymbols(1000) && p.rate == 2400 {
			p.badRun = 0
			p.Retrain()
		}
	default: // rxIdle, rxAcquire: nothing to hand-shake yet
	}
}
