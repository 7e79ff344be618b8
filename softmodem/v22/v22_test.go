package v22

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"testing"

	"github.com/isp-box/isp-box/softmodem/async"
	"github.com/isp-box/isp-box/softmodem/dsp"
	"github.com/isp-box/isp-box/softmodem/g711"
	"github.com/isp-box/isp-box/softmodem/internal/linesim"
	"github.com/isp-box/isp-box/softmodem/internal/sigtest"
)

// end is a pump with async framing on both sides, as a line endpoint.
type end struct {
	p    *Pump
	atx  *async.Tx
	arx  *async.Rx
	got  []byte
	f    []float64
	data []byte
}

func newEnd(caller bool, rate int, data []byte) *end {
	e := &end{data: data}
	e.atx = async.NewTx(async.Format8N1, func() (byte, bool) {
		if len(e.data) == 0 {
			return 0, false
		}
		b := e.data[0]
		e.data = e.data[1:]
		return b, true
	})
	e.arx = async.NewRx(async.Format8N1, func(b byte) { e.got = append(e.got, b) })
	e.p = New(caller, rate, dsp.DBm0(-13), e.atx.Bit, e.arx.PutBit)
	if !caller {
		e.p.Start()
	}
	return e
}

func (e *end) Process(rx, tx []int16) {
	if len(e.f) < len(rx) {
		e.f = make([]float64, len(rx))
	}
	for i, x := range rx {
		e.f[i] = float64(x)
	}
	e.p.Demodulate(e.f[:len(rx)])
	e.p.Modulate(e.f[:len(tx)])
	for i, x := range e.f[:len(tx)] {
		tx[i] = dsp.Clip16(x)
	}
}

func randomBytes(n int, seed uint64) []byte { return sigtest.RandomBytes(n, seed, 7) }

func TestScrambler(t *testing.T) {
	var s, d scrambler
	in := randomBytes(1000, 1)
	for _, b := range in {
		for i := 0; i < 8; i++ {
			bit := int(b>>i) & 1
			if got := d.descramble(s.scramble(bit)); got != bit {
				t.Fatal("descrambler does not invert the scrambler")
			}
		}
	}
	// Ones in: the 64-ones rule keeps the line from a constant pattern.
	run := 0
	for i := 0; i < 10000; i++ {
		if s.scramble(1) == 1 {
			run++
		} else {
			run = 0
		}
		if run > 64 {
			t.Fatal("more than 64 ones on the line")
		}
	}
}

func TestPair(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ansRate  int
		callRate int
		imp      linesim.Impairments
		wantRate int
	}{
		{"2400", 2400, 2400, linesim.Impairments{Law: g711.Ulaw}, 2400},
		{"1200 caller", 2400, 1200, linesim.Impairments{Law: g711.Ulaw}, 1200},
		{"1200 answerer", 1200, 2400, linesim.Impairments{Law: g711.Ulaw}, 1200},
		{"2400 30dB", 2400, 2400, linesim.Impairments{Law: g711.Alaw, SNR: 30, Seed: 3}, 2400},
		{"2400 +100ppm", 2400, 2400, linesim.Impairments{Law: g711.Ulaw, SNR: 30, PPM: 100, Seed: 4}, 2400},
		{"2400 -100ppm", 2400, 2400, linesim.Impairments{Law: g711.Ulaw, SNR: 30, PPM: -100, Seed: 5}, 2400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 3000
			if testing.Short() {
				n = 400
			}
			a2c, c2a := randomBytes(n, 1), randomBytes(n, 2)
			ans := newEnd(false, tc.ansRate, a2c)
			call := newEnd(true, tc.callRate, c2a)
			back := tc.imp
			back.Seed += 10
			line := linesim.New(ans, call, tc.imp, back)
			ok := line.Run(5, func() bool { return ans.p.Ready() && call.p.Ready() })
			if !ok {
				t.Fatalf("no training in 5 s: answerer rx %v tx %v, caller rx %v tx %v, stats %+v %+v",
					ans.p.rx, ans.p.tx, call.p.rx, call.p.tx, ans.p.Stats(), call.p.Stats())
			}
			t.Logf("trained at %d bit/s after %.2f s; stats %+v / %+v", ans.p.Rate(), float64(line.Samples)/8000, ans.p.Stats(), call.p.Stats())
			if ans.p.Rate() != tc.wantRate || call.p.Rate() != tc.wantRate {
				t.Fatalf("rates %d/%d, want %d", ans.p.Rate(), call.p.Rate(), tc.wantRate)
			}
			line.Run(float64(line.Samples)/8000+float64(len(a2c))*10/float64(tc.wantRate)+2, func() bool {
				return bytes.Equal(ans.got, c2a) && bytes.Equal(call.got, a2c)
			})
			if !bytes.Equal(ans.got, c2a) || !bytes.Equal(call.got, a2c) {
				t.Errorf("caller->answerer %d/%d bytes, answerer->caller %d/%d", len(ans.got), len(c2a), len(call.got), len(a2c))
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGoldenU11 pins the answerer's first second of unscrambled ones
// (μ-law) and checks a calling receiver qualifies them and asks for
// 2400 bit/s with S1.
func TestGoldenU11(t *testing.T) {
	p := New(false, 2400, dsp.DBm0(-13), func() int { return 1 }, func(int) {})
	p.Start()
	f := make([]float64, 9600)
	p.Modulate(f)
	f = sigtest.Golden(t, "testdata/answer-u11.ulaw", f, *update)
	c := New(true, 2400, dsp.DBm0(-13), func() int { return 1 }, func(int) {})
	c.Demodulate(f)
	if c.rx != rxU11Sustain || c.tx != txS1 {
		t.Errorf("caller after the golden U11: rx stage %d, tx stage %d; want U11 qualified and S1 sent", c.rx, c.tx)
	}
}

// dropper loses one 20 ms block of audio in one direction at a set time:
// one lost RTP packet.
type dropper struct {
	linesim.Endpoint
	at, n int
}

func (d *dropper) Process(rx, tx []int16) {
	d.Endpoint.Process(rx, tx)
	if d.n++; d.n == d.at {
		clear(tx)
	}
}

// TestRetrainAfterLoss: a lost packet at 2400 bit/s garbles some data;
// the modems retrain (S1) if the receiver lost lock, and data flows again.
func TestRetrainAfterLoss(t *testing.T) {
	ans := newEnd(false, 2400, nil)
	call := newEnd(true, 2400, nil)
	drop := &dropper{Endpoint: ans, at: 400} // 8 s in: in data
	line := linesim.New(drop, call, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 1}, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 2})
	if !line.Run(5, func() bool { return ans.p.Ready() && call.p.Ready() }) {
		t.Fatal("no training")
	}
	line.Run(10, func() bool { return false })
	// After the hole: data again, and a message gets through intact.
	msg := []byte("after the lost packet")
	ans.data = append(ans.data, msg...)
	call.got = nil
	line.Run(20, func() bool { return bytes.HasSuffix(call.got, msg) })
	if !bytes.HasSuffix(call.got, msg) || !call.p.Ready() {
		t.Errorf("after the loss: caller got %q, ready %v, stats %+v", call.got, call.p.Ready(), call.p.Stats())
	}
	t.Logf("after the loss, retrains: answerer %d, caller %d; caller %+v", ans.p.Stats().Retrains, call.p.Stats().Retrains, call.p.Stats())

	// A retrain asked for by the caller (as on a receiver that lost
	// lock): S1 both ways, back to 2400 bit/s, data again.
	call.p.Retrain()
	if call.p.Ready() {
		t.Fatal("still ready while retraining")
	}
	start := line.Samples
	line.Run(float64(line.Samples)/8000+5, func() bool { return ans.p.Ready() && call.p.Ready() })
	if !ans.p.Ready() || !call.p.Ready() || ans.p.Rate() != 2400 {
		t.Fatalf("retrain did not finish: answerer rx %d tx %d, caller rx %d tx %d", ans.p.rx, ans.p.tx, call.p.rx, call.p.tx)
	}
	if ans.p.Stats().Retrains != 1 || call.p.Stats().Retrains != 1 {
		t.Errorf("retrains %d/%d, want 1/1", ans.p.Stats().Retrains, call.p.Stats().Retrains)
	}
	t.Logf("retrain took %.2f s", float64(line.Samples-start)/8000)
	msg2 := []byte("after the retrain")
	call.data = append(call.data, msg2...)
	ans.got = nil
	line.Run(float64(line.Samples)/8000+3, func() bool { return bytes.HasSuffix(ans.got, msg2) })
	if !bytes.HasSuffix(ans.got, msg2) {
		t.Errorf("after the retrain the answerer got %q", ans.got)
	}
}

// hole silences one direction for a while: a burst of lost packets.
type hole struct {
	linesim.Endpoint
	from, to, n int
}

func (h *hole) Process(rx, tx []int16) {
	h.Endpoint.Process(rx, tx)
	if h.n++; h.n >= h.from && h.n < h.to {
		clear(tx)
	}
}

// TestCarrierBackAfterHole: 600 ms without the caller's signal (longer
// than the carrier hold-over) in data; when it comes back the answerer
// asks for a retrain and data flows again.
func TestCarrierBackAfterHole(t *testing.T) {
	ans := newEnd(false, 2400, nil)
	call := newEnd(true, 2400, nil)
	h := &hole{Endpoint: call, from: 300, to: 330}
	line := linesim.New(ans, h, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 1}, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 2})
	if !line.Run(5, func() bool { return ans.p.Ready() && call.p.Ready() }) {
		t.Fatal("no training")
	}
	line.Run(12, func() bool { return false })
	msg := []byte("after the hole")
	call.data = append(call.data, msg...)
	ans.got = nil
	line.Run(20, func() bool { return bytes.HasSuffix(ans.got, msg) })
	if !bytes.HasSuffix(ans.got, msg) || !ans.p.Ready() {
		t.Errorf("answerer got %q, ready %v, rx %d tx %d; caller rx %d tx %d", ans.got, ans.p.Ready(), ans.p.rx, ans.p.tx, call.p.rx, call.p.tx)
	}
	if ans.p.Stats().Retrains == 0 {
		t.Error("no retrain after the carrier came back")
	}
}

// TestSNREstimate checks the receiver's SNR estimate against the noise
// the line adds (white, over the whole 4 kHz channel, no companding so
// it is the only noise), averaged over seconds 6–12 of a 2400 bit/s call
// in data both ways.
func TestSNREstimate(t *testing.T) {
	for _, tc := range []struct {
		snr float64
		ppm float64
	}{{20, 0}, {30, 0}, {40, 0}, {30, 100}, {30, -100}} {
		t.Run(fmt.Sprintf("%gdB_%+gppm", tc.snr, tc.ppm), func(t *testing.T) {
			ans := newEnd(false, 2400, randomBytes(5000, 1))
			call := newEnd(true, 2400, randomBytes(5000, 2))
			imp := linesim.Impairments{Linear: true, SNR: tc.snr, PPM: tc.ppm, Seed: 7}
			back := imp
			back.Seed = 8
			line := linesim.New(ans, call, imp, back)
			if !line.Run(6, func() bool { return false }) && !(ans.p.Ready() && call.p.Ready()) {
				t.Fatalf("not in data after 6 s: %+v / %+v", ans.p.Stats(), call.p.Stats())
			}
			var sa, sc float64
			n := 0
			for s := 6.5; s <= 12; s += 0.5 {
				line.Run(s, func() bool { return false })
				sa += ans.p.Stats().SNR
				sc += call.p.Stats().SNR
				n++
			}
			sa, sc = sa/float64(n), sc/float64(n)
			t.Logf("added %g dB, %+g ppm: answerer estimates %.1f dB, caller %.1f dB (rate %d)", tc.snr, tc.ppm, sa, sc, ans.p.Rate())
			if ans.p.Rate() != 2400 || call.p.Rate() != 2400 {
				t.Fatalf("rates %d/%d, want 2400", ans.p.Rate(), call.p.Rate())
			}
			if math.Abs(sa-tc.snr) > 2 || math.Abs(sc-tc.snr) > 2 {
				t.Errorf("SNR estimates %.1f / %.1f dB, want %g ± 2 dB", sa, sc, tc.snr)
			}
		})
	}
}
