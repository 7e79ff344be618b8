package tones

import (
	"testing"

	"github.com/isp-box/isp-box/softmodem/dsp"
)

func TestDetector(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hz        float64
		reversals bool
		level     float64
		snr       float64
		detect    bool
		wantRev   int
	}{
		{"ans/pr", 2100, true, -13, 0, true, 7},
		{"ans", 2100, false, -13, 0, true, 0},
		{"plus 15 Hz", 2115, true, -13, 0, true, 7},
		{"minus 15 Hz", 2085, true, -13, 0, true, 7},
		{"weak noisy", 2100, true, -40, 15, true, 7},
		{"too weak", 2100, true, -50, 0, false, 0},
		{"bell answer tone", 2225, false, -13, 0, false, 0},
		{"v21 mark", 1650, false, -13, 0, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewANS(dsp.DBm0(tc.level), tc.reversals)
			g.nco.SetFreq(tc.hz)
			d := NewANSDetector()
			noise := dsp.NewNoise(dsp.NoiseForSNR(dsp.DBm0(tc.level), tc.snr), 1)
			buf := make([]float64, 160)
			for i := 0; i < ANSDuration/20; i++ {
				g.Generate(buf)
				if tc.snr != 0 {
					for j := range buf {
						buf[j] += noise.Sample()
					}
				}
				d.Push(buf)
			}
			if d.Detected != tc.detect || d.Reversals != tc.wantRev {
				t.Errorf("detected %v with %d reversals, want %v with %d", d.Detected, d.Reversals, tc.detect, tc.wantRev)
			}
		})
	}
}

func TestNoiseIsNotANS(t *testing.T) {
	d := NewANSDetector()
	n := dsp.NewNoise(dsp.DBm0(-10), 5)
	buf := make([]float64, 160)
	for i := 0; i < 500; i++ {
		for j := range buf {
			buf[j] = n.Sample()
		}
		d.Push(buf)
	}
	if d.Detected {
		t.Error("white noise taken for ANS")
	}
}
