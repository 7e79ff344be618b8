package fsk

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"testing"

	"github.com/isp-box/isp-box/softmodem/async"
	"github.com/isp-box/isp-box/softmodem/dsp"
	"github.com/isp-box/isp-box/softmodem/g711"
	"github.com/isp-box/isp-box/softmodem/internal/sigtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// loop modulates data with spec, passes it through noise at snr dB (none
// if 0) and μ-law, and demodulates it.
func loop(t *testing.T, spec Spec, data []byte, snr float64, ppm float64) []byte {
	t.Helper()
	// Marks first, as a modem's carrier does before data.
	atx := async.NewTx(async.Format8N1, async.Queue(data, 30))
	var got []byte
	arx := async.NewRx(async.Format8N1, func(b byte) { got = append(got, b) })
	tx := NewTx(spec, DefaultLevel, atx.Bit)
	rx := NewRx(spec, arx.PutBit)
	noise := dsp.NewNoise(dsp.NoiseForSNR(DefaultLevel, snr), 7)
	var rs *dsp.Resampler
	if ppm != 0 {
		rs = dsp.NewResampler(ppm)
	}
	buf := make([]float64, 160)
	var line []float64
	// Lead-in of marks, the data, and a tail of marks.
	blocks := (len(data)*10*8000/300)/160 + 100
	for i := 0; i < blocks; i++ {
		tx.Modulate(buf)
		line = line[:0]
		if rs != nil {
			line = rs.Process(line, buf)
		} else {
			line = append(line, buf...)
		}
		for j, x := range line {
			if snr != 0 {
				x += noise.Sample()
			}
			line[j] = float64(g711.DecodeUlaw(g711.EncodeUlaw(dsp.Clip16(x))))
		}
		rx.Demodulate(line)
	}
	return got
}

func TestLoopback(t *testing.T) {
	data := make([]byte, 2000)
	if testing.Short() {
		data = data[:300]
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.IntN(256))
	}
	for _, tc := range []struct {
		spec     Spec
		snr, ppm float64
	}{
		{V21Ch1, 0, 0}, {V21Ch2, 0, 0}, {Bell103Orig, 0, 0}, {Bell103Ans, 0, 0},
		{V21Ch1, 20, 0}, {V21Ch2, 20, 100}, {Bell103Orig, 20, -100}, {Bell103Ans, 25, 100},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			got := loop(t, tc.spec, data, tc.snr, tc.ppm)
			if !bytes.Equal(got, data) {
				t.Errorf("snr %v ppm %v: got %d bytes, %d differ", tc.snr, tc.ppm, len(got), diff(got, data))
			}
		})
	}
}

func diff(a, b []byte) int {
	n := 0
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			n++
		}
	}
	return n
}

// TestGolden pins the modulator's output: "isp-box" framed 8N1 on each
// channel, as μ-law, and checks the demodulator reads the file back.
func TestGolden(t *testing.T) {
	for _, spec := range []Spec{V21Ch1, V21Ch2, Bell103Orig, Bell103Ans} {
		msg := []byte("isp-box\r\n")
		atx := async.NewTx(async.Format8N1, async.Queue(msg, 40))
		tx := NewTx(spec, DefaultLevel, atx.Bit)
		buf := make([]float64, 8000*(40+10*len(msg)+20)/300)
		tx.Modulate(buf)
		name := "testdata/" + map[string]string{
			V21Ch1.Name: "v21ch1", V21Ch2.Name: "v21ch2", Bell103Orig.Name: "bell103orig", Bell103Ans.Name: "bell103ans",
		}[spec.Name] + ".ulaw"
		f := sigtest.Golden(t, name, buf, *update)
		var got []byte
		arx := async.NewRx(async.Format8N1, func(b byte) { got = append(got, b) })
		rx := NewRx(spec, arx.PutBit)
		rx.Demodulate(f)
		if !bytes.Equal(got, msg) {
			t.Errorf("%s: golden file decodes to %q", spec.Name, got)
		}
	}
}
