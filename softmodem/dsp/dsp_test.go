package dsp

import (
	"math"
	"testing"
)

func tone(hz, amp float64, n int) []float64 {
	out := make([]float64, n)
	nco := NewNCO(hz)
	for i := range out {
		_, s := nco.Next()
		out[i] = amp * s
	}
	return out
}

func TestNCO(t *testing.T) {
	nco := NewNCO(1000)
	for i := 0; i < 10000; i++ {
		c, s := nco.Next()
		want := 2 * math.Pi * 1000 * float64(i) / SampleRate
		if math.Abs(c-math.Cos(want)) > 1e-5 || math.Abs(s-math.Sin(want)) > 1e-5 {
			t.Fatalf("sample %d: %v %v", i, c, s)
		}
	}
}

func TestGoertzel(t *testing.T) {
	for _, tc := range []struct {
		hz, probe float64
		min, max  float64 // power relative to A²/2
	}{
		{2100, 2100, 0.99, 1.01},
		{2100, 1800, 0, 0.01},
		{1000, 1000, 0.99, 1.01},
	} {
		g := NewGoertzel(tc.probe, 160)
		var p float64
		for _, x := range tone(tc.hz, 1000, 160) {
			if v, ok := g.Push(x); ok {
				p = v
			}
		}
		if r := p / (1000 * 1000 / 2); r < tc.min || r > tc.max {
			t.Errorf("%v Hz probed at %v: %v of the tone's power", tc.hz, tc.probe, r)
		}
	}
}

func TestFilters(t *testing.T) {
	gain := func(f Biquad, hz float64) float64 {
		var p float64
		for i, x := range tone(hz, 1, 8000) {
			y := f.Filter(x)
			if i >= 4000 {
				p += y * y
			}
		}
		return math.Sqrt(p / 2000)
	}
	if g := gain(BandPass(1080, 2), 1080); math.Abs(g-1) > 0.01 {
		t.Errorf("band-pass at centre: %v", g)
	}
	if g := gain(LowPass(500, 0.707), 3000); g > 0.05 {
		t.Errorf("low-pass 500 Hz at 3 kHz: %v", g)
	}
	if g := gain(HighPass(500, 0.707), 100); g > 0.05 {
		t.Errorf("high-pass 500 Hz at 100 Hz: %v", g)
	}
}

func TestRootRaisedCosine(t *testing.T) {
	// Two RRC filters in a row are a raised cosine: zero at every other
	// symbol instant (no intersymbol interference).
	h := RootRaisedCosine(0.75, 8, 6)
	rc := make([]float64, 2*len(h)-1)
	for i := range h {
		for j := range h {
			rc[i+j] += h[i] * h[j]
		}
	}
	mid := len(rc) / 2
	if math.Abs(rc[mid]-1) > 1e-6 {
		t.Errorf("peak %v", rc[mid])
	}
	for k := 1; k < 6; k++ {
		if math.Abs(rc[mid+8*k]) > 0.01 {
			t.Errorf("ISI at symbol %d: %v", k, rc[mid+8*k])
		}
	}
}

func TestResampler(t *testing.T) {
	for _, ppm := range []float64{100, -100, 1000} {
		r := NewResampler(ppm)
		in := tone(1800, 1000, 80000)
		out := r.Process(nil, in)
		want := float64(len(in)) * (1 + ppm*1e-6)
		if math.Abs(float64(len(out))-want) > 40 {
			t.Errorf("%v ppm: %d samples out of %d", ppm, len(out), len(in))
		}
		var errP float64
		for i, y := range out {
			if i > 1000 && i < len(out)-100 {
				errP += y * y
			}
		}
		// Correlation with the delayed reference is not needed: the tone's
		// level must be kept.
		if rms := math.Sqrt(errP / float64(len(out)-1100)); math.Abs(rms-1000/math.Sqrt2) > 10 {
			t.Errorf("%v ppm: rms %v", ppm, rms)
		}
	}
}

func TestLevels(t *testing.T) {
	if math.Abs(ToDBm0(DBm0(-13))+13) > 1e-9 {
		t.Error("dBm0 round trip")
	}
	m := NewPowerMeter(0.01)
	for _, x := range tone(1000, DBm0(-20)*math.Sqrt2, 8000) {
		m.Push(x)
	}
	if l := m.DBm0(); math.Abs(l+20) > 0.2 {
		t.Errorf("meter reads %v dBm0 for -20", l)
	}
	a := NewAGC(1000, 10, 0.05)
	var y float64
	for _, x := range tone(1000, 100*math.Sqrt2, 8000) {
		y = a.Push(x)
	}
	_ = y
	if math.Abs(a.Gain-10) > 0.5 {
		t.Errorf("AGC gain %v, want 10", a.Gain)
	}
}
