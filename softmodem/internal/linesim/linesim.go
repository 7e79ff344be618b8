// Package linesim joins two modem endpoints with a simulated telephone
// line, block by block and faster than real time: G.711 companding,
// white noise at a set SNR, and a sample-clock offset between the ends.
package linesim

import (
	"github.com/isp-box/isp-box/softmodem/dsp"
	"github.com/isp-box/isp-box/softmodem/g711"
)

// Endpoint is one end of the line: it consumes a block of received audio
// and produces a block to send, of the same length.
type Endpoint interface {
	Process(rx, tx []int16)
}

// Impairments of one direction of the line.
type Impairments struct {
	Law g711.Law
	// Linear carries the samples without G.711 companding (a test that
	// needs the added noise to be the only noise).
	Linear bool
	// SNR in dB against NoiseRef; 0 means no noise.
	SNR float64
	// NoiseRef is the signal RMS the SNR refers to (the modems' -13 dBm0
	// when zero).
	NoiseRef float64
	// PPM is the receiving end's sample clock offset against the sender's.
	PPM  float64
	Seed uint64
}

type direction struct {
	imp   Impairments
	noise *dsp.Noise
	rs    *dsp.Resampler
	fifo  []float64
	buf   []float64
	codes []byte
}

func newDirection(imp Impairments) *direction {
	d := &direction{imp: imp}
	if imp.SNR != 0 {
		ref := imp.NoiseRef
		if ref == 0 {
			ref = dsp.DBm0(-13)
		}
		d.noise = dsp.NewNoise(dsp.NoiseForSNR(ref, imp.SNR), imp.Seed+1)
	}
	if imp.PPM != 0 {
		d.rs = dsp.NewResampler(imp.PPM)
		// 128 ms of line delay: at -100 ppm the receiver then runs dry
		// only after about 20 minutes of audio.
		d.fifo = make([]float64, 1024)
	}
	return d
}

// carry takes a sent block and returns the received block of the same
// length (zeros while a resampler's delay fills).
func (d *direction) carry(tx []int16, rx []int16) {
	d.buf = d.buf[:0]
	for _, x := range tx {
		d.buf = append(d.buf, float64(x))
	}
	if d.rs != nil {
		d.fifo = d.rs.Process(d.fifo, d.buf)
	} else {
		d.fifo = append(d.fifo, d.buf...)
	}
	for i := range rx {
		var x float64
		if len(d.fifo) > 0 {
			x = d.fifo[0]
			d.fifo = d.fifo[1:]
		}
		if d.noise != nil {
			x += d.noise.Sample()
		}
		s := dsp.Clip16(x)
		if d.imp.Linear {
			rx[i] = s
		} else if d.imp.Law == g711.Alaw {
			rx[i] = g711.DecodeAlaw(g711.EncodeAlaw(s))
		} else {
			rx[i] = g711.DecodeUlaw(g711.EncodeUlaw(s))
		}
	}
	if len(d.fifo) == 0 {
		d.fifo = d.fifo[:0:0]
	} else if cap(d.fifo) > 1<<16 && len(d.fifo) < cap(d.fifo)/4 {
		d.fifo = append([]float64(nil), d.fifo...)
	}
}

// Line is a two-way line between endpoints A and B.
type Line struct {
	A, B   Endpoint
	ab, ba *direction
	Block  int
	// Samples is how much audio has passed.
	Samples int64

	rxA, txA, rxB, txB []int16
}

// New returns a line; aToB and bToA are the impairments each way.
func New(a, b Endpoint, aToB, bToA Impairments) *Line {
	const block = 160
	return &Line{
		A: a, B: b, ab: newDirection(aToB), ba: newDirection(bToA), Block: block,
		rxA: make([]int16, block), txA: make([]int16, block),
		rxB: make([]int16, block), txB: make([]int16, block),
	}
}

// Step runs one block each way.
func (l *Line) Step() {
	l.A.Process(l.rxA, l.txA)
	l.B.Process(l.rxB, l.txB)
	l.ab.carry(l.txA, l.rxB)
	l.ba.carry(l.txB, l.rxA)
	l.Samples += int64(l.Block)
}

// Run steps until done returns true or maxSeconds of audio passed; it
// reports whether done was reached.
func (l *Line) Run(maxSeconds float64, done func() bool) bool {
	limit := int64(maxSeconds * dsp.SampleRate)
	for l.Samples < limit {
		if done() {
			return true
		}
		l.Step()
	}
	return done()
}
