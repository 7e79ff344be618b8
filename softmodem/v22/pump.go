package v22

import (
	"math"

	"github.com/isp-box/isp-box/softmodem/dsp"
)

// txStage is the transmitter's part of the handshake.
type txStage int

const (
	txSilence  txStage = iota
	txU11              // unscrambled ones at 1200 bit/s (answerer)
	txS1               // unscrambled double dibit 00 11, 100 ms
	txS11              // scrambled ones at 1200 bit/s, untimed
	txTimedS11         // scrambled ones at 1200 bit/s until count
	txS1111            // scrambled ones at 2400 bit/s, 200 ms
	txData
)

// rxStage is the receiver's part of the handshake.
type rxStage int

const (
	rxIdle         rxStage = iota // no carrier
	rxAcquire                     // symbol timing and gain settling
	rxU11                         // caller: qualifying the answerer's unscrambled ones
	rxU11Sustain                  // caller: waiting for them to end
	rxS11                         // scrambled ones at 1200, looking for S1
	rxS11Sustain                  // answerer at 1200: timed wait before data
	rxWaitOnes2400                // 16-way decisions, waiting for 32 ones
	rxData
)

// Stats is the receiver's view of the line.
type Stats struct {
	Rate int     // negotiated bit/s, 0 before the handshake ends
	MSE  float64 // equaliser mean-square error, relative to the mean symbol power
	// SNR is the line's signal-to-noise ratio in dB, estimated from the
	// equaliser's MSE and referred to the whole 4 kHz channel (as a
	// line's SNR is measured), not to the decision point.
	SNR       float64
	Retrains  int
	TimingPPM float64 // symbol timing correction so far
	Carrier   bool
}

// Pump is one V.22bis modem's signal processing and handshake. Modulate and
// Demodulate run on one goroutine, block by block.
type Pump struct {
	caller  bool
	maxRate int
	getBit  func() int
	putBit  func(bit int)
	// OnData, if set, is called once both directions carry data.
	OnData func(rate int)

	rate int // negotiated: 1200 until S1 is seen both ways

	// Transmitter.
	tx        txStage
	txCount   int
	txScr     scrambler
	txQuad    int
	txPhase   int // 0..39 in 24 kHz steps since the newest symbol
	txSyms    [txSpan]complex128
	txNewest  int
	txCarrier dsp.NCO
	txGain    float64
	txStarted bool

	// Receiver.
	rx        rxStage
	rxCount   int
	repeats   int
	s11Run    int // symbols of descrambled ones in a row
	band      dsp.Cascade
	lastRaw   int
	rxScr     scrambler
	rxQuad    int
	sixteen   bool
	rxCarrier dsp.NCO
	bb        []complex128 // baseband ring
	n         int64        // samples received
	tNext     float64      // time of the next half-symbol sample
	half      int
	power     dsp.PowerMeter
	dcd       bool
	quiet     int // samples below the carrier-off level
	agc       float64
	pow       float64 // mean power of the symbol samples
	agcAcc    float64
	agcN      int
	ySyms     [3]complex128 // previous symbol, mid, current (matched filter out)
	eqBuf     [eqLen]complex128
	eqTaps    [eqLen]complex128
	eqMu      float64
	phase     float64 // carrier phase correction
	freq      float64
	timingAcc float64
	mse       float64
	retrains  int
	dataUp    bool
	// retraining: the S1 just sent starts a retrain, not the call.
	retraining bool
	// wasData: the carrier dropped during data; its return starts a retrain.
	wasData bool
	// badRun counts data symbols received with an SNR too poor to trust.
	badRun int
}

// New returns a pump. caller selects the calling (low channel) role;
// maxRate is 2400 (V.22bis) or 1200 (V.22 only). getBit supplies data
// bits once the handshake is done, putBit receives them.
func New(caller bool, maxRate int, level float64, getBit func() int, putBit func(int)) *Pump {
	p := &Pump{caller: caller, maxRate: maxRate, getBit: getBit, putBit: putBit, rate: 1200,
		bb: make([]complex128, 256), power: dsp.NewPowerMeter(0.01)}
	txc, rxc := highCarrier, lowCarrier
	if caller {
		txc, rxc = rxc, txc
	}
	p.txCarrier = dsp.NewNCO(txc)
	p.rxCarrier = dsp.NewNCO(rxc)
	// Carrier detect measures the receive band only, so the line's
	// noise outside it does not count.
	p.band = dsp.Cascade{dsp.BandPass(rxc, 1.2), dsp.BandPass(rxc, 1.2)}
	// The passband power is half the baseband's, whose mean is targetPower.
	p.txGain = level / math.Sqrt(targetPower/2)
	p.resetRx()
	return p
}

// Start begins transmitting: the answerer's unscrambled ones (after the
// V.25 answer tone, which the caller of the package sends). A caller's
// pump stays silent until it hears the answerer.
func (p *Pump) Start() {
	if !p.caller && p.tx == txSilence {
		p.setTx(txU11, 0)
	}
}

// Rate is the negotiated rate once in data, else 0.
func (p *Pump) Rate() int {
	if p.dataUp {
		return p.rate
	}
	return 0
}

// Ready reports whether data flows both ways.
func (p *Pump) Ready() bool { return p.dataUp }

// Carrier reports the far carrier's presence.
func (p *Pump) Carrier() bool { return p.dcd }

// Stats returns the line figures.
func (p *Pump) Stats() Stats {
	s := Stats{Rate: p.Rate(), MSE: p.mse / targetPower, Retrains: p.retrains, Carrier: p.dcd}
	if p.mse > 0 {
		s.SNR = 10*math.Log10(targetPower/p.mse) - matchedFilterGain
	}
	return s
}

// Retrain asks the far end for a retrain (V.22bis §6.3.1.3): S1, then the
// 1200 bit/s scrambled ones and the rate switch again. The receiver starts
// over from 4-way decisions with a fresh equaliser.
func (p *Pump) Retrain() {
	if p.maxRate < 2400 || p.rx != rxData {
		return
	}
	p.startRetrain()
	p.eqTaps = [eqLen]complex128{}
	p.eqTaps[eqCentre] = 1
}

// startRetrain is the common part of asking for and answering a retrain:
// S1, then timed scrambled ones at 1200 and 2400 bit/s, whichever side
// asked.
func (p *Pump) startRetrain() {
	p.retrains++
	p.dataUp = false
	p.sixteen = false
	p.rate = 2400
	p.retraining = true
	p.setTx(txS1, 0)
	p.setRx(rxS11)
}

func (p *Pump) setTx(s txStage, count int) { p.tx, p.txCount = s, count }
func (p *Pump) setRx(s rxStage)            { p.rx, p.rxCount, p.repeats, p.s11Run = s, 0, 0, 0 }

// --- transmitter ---

func (p *Pump) scrambledDibit(data bool) int {
	b := func() int {
		if data {
			return p.txScr.scramble(p.getBit())
		}
		return p.txScr.scramble(1)
	}
	hi := b()
	return hi<<1 | b()
}

// nextSymbol runs the transmit handshake and returns the next point.
func (p *Pump) nextSymbol() complex128 {
	quad := func(dibit int) { p.txQuad = (p.txQuad + phaseStep[dibit]) & 3 }
	switch p.tx {
	case txSilence:
		return 0
	case txU11:
		quad(3)
	case txS1:
		if p.txCount&1 == 0 {
			quad(0)
		} else {
			quad(3)
		}
		if p.txCount++; p.txCount >= msToSymbols(100) {
			if p.caller && !p.retraining {
				p.setTx(txS11, 0)
			} else {
				// 600 ms from the end of the caller's S1 to 2400 bit/s
				// ones: 100 ms of S1 and 500 ms of scrambled ones.
				p.setTx(txTimedS11, msToSymbols(756-500))
			}
		}
	case txS11:
		quad(p.scrambledDibit(false))
	case txTimedS11:
		quad(p.scrambledDibit(false))
		if p.txCount++; p.txCount >= msToSymbols(756) {
			if p.rate == 2400 {
				p.setTx(txS1111, 0)
			} else {
				p.setTx(txData, 0)
			}
		}
	case txS1111:
		quad(p.scrambledDibit(false))
		low := p.scrambledDibit(false)
		if p.txCount++; p.txCount >= msToSymbols(200) {
			p.setTx(txData, 0)
		}
		return constellation[p.txQuad<<2|low]
	case txData:
		quad(p.scrambledDibit(true))
		if p.rate == 2400 {
			return constellation[p.txQuad<<2|p.scrambledDibit(true)]
		}
	}
	return constellation[p.txQuad<<2|1]
}

// Modulate fills out with the next transmit samples.
func (p *Pump) Modulate(out []float64) {
	for i := range out {
		if !p.txStarted || p.txPhase >= spsNum {
			if p.txStarted {
				p.txPhase -= spsNum
			}
			p.txStarted = true
			p.txNewest = (p.txNewest + 1) % txSpan
			p.txSyms[p.txNewest] = p.nextSymbol()
		}
		var b complex128
		k := p.txNewest
		for j := 0; j < txSpan; j++ {
			b += p.txSyms[k] * complex(txPulse[p.txPhase+spsNum*j], 0)
			if k--; k < 0 {
				k = txSpan - 1
			}
		}
		c, s := p.txCarrier.Next()
		out[i] = (real(b)*c - imag(b)*s) * p.txGain
		p.txPhase += spsDen
	}
	if p.tx == txData && p.rx == rxData && !p.dataUp {
		p.dataUp = true
		p.retraining = false
		if p.OnData != nil {
			p.OnData(p.rate)
		}
	}
}
