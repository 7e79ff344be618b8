package softmodem

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isp-box/isp-box/softmodem/async"
	"github.com/isp-box/isp-box/softmodem/dsp"
	"github.com/isp-box/isp-box/softmodem/fsk"
	"github.com/isp-box/isp-box/softmodem/g711"
	"github.com/isp-box/isp-box/softmodem/internal/linesim"
	"github.com/isp-box/isp-box/softmodem/internal/sigtest"
	"github.com/isp-box/isp-box/softmodem/internal/spandsppeer"
	"github.com/isp-box/isp-box/softmodem/internal/wav"
	"github.com/isp-box/isp-box/softmodem/tones"
)

func randomBytes(n int, seed uint64) []byte { return sigtest.RandomBytes(n, seed, 99) }

func countDiff(a, b []byte) int {
	n := 0
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			n++
		}
	}
	return n
}

// impairments of the test matrix: each runs both directions.
var fskCases = []struct {
	name string
	imp  linesim.Impairments
}{
	{"ulaw", linesim.Impairments{Law: g711.Ulaw}},
	{"alaw-snr20", linesim.Impairments{Law: g711.Alaw, SNR: 20, Seed: 1}},
	{"ulaw-snr30-plus100ppm", linesim.Impairments{Law: g711.Ulaw, SNR: 30, PPM: 100, Seed: 2}},
	{"alaw-snr40-minus100ppm", linesim.Impairments{Law: g711.Alaw, SNR: 40, PPM: -100, Seed: 3}},
}

// fastAnswer shortens the V.25 silence and tone so tests spend their audio
// on data; the full sequence is checked in TestAnswerSequence.
func fastAnswer(c Config) Config {
	c.BillingDelay = 200
	c.ANSDuration = 900
	return c
}

func TestFSKPair(t *testing.T) {
	for _, mod := range []Modulation{V21, Bell103} {
		for _, tc := range fskCases {
			t.Run(mod.String()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ans := New(fastAnswer(Config{Modulation: mod, Role: Answer}))
				org := New(Config{Modulation: mod, Role: Originate})
				n := 1000
				if testing.Short() {
					n = 200
				}
				a2o, o2a := randomBytes(n, 1), randomBytes(n, 2)
				ans.Write(a2o)
				org.Write(o2a)
				back := tc.imp
				back.Seed += 100
				line := linesim.New(ans, org, tc.imp, back)
				var gotA, gotO []byte
				line.Run(60, func() bool {
					gotA = append(gotA, ans.TakeReceived()...)
					gotO = append(gotO, org.TakeReceived()...)
					return len(gotA) >= len(o2a) && len(gotO) >= len(a2o)
				})
				if !bytes.Equal(gotO, a2o) || !bytes.Equal(gotA, o2a) {
					t.Errorf("answer->originate %d/%d bytes, %d differ; originate->answer %d/%d, %d differ (states %v %v)",
						len(gotO), len(a2o), countDiff(gotO, a2o), len(gotA), len(o2a), countDiff(gotA, o2a), ans.State(), org.State())
				}
			})
		}
	}
}

// TestAnswerSequence checks the V.25 timing of the answering modem's
// output: 1.8–2.5 s of silence, 3.3 s of 2100 Hz with a reversal every
// 450 ms, then the answer carrier; and the originate side hears it.
func TestAnswerSequence(t *testing.T) {
	ans := New(Config{Modulation: V21, Role: Answer})
	rx := make([]int16, 160)
	tx := make([]int16, 160)
	det := tones.NewANSDetector()
	var firstTone, toneEnd int
	f := make([]float64, 160)
	for blk := 0; blk < 8*50; blk++ {
		ans.Process(rx, tx)
		for i, x := range tx {
			f[i] = float64(x)
		}
		was := det.Present
		det.Push(f)
		if det.Present && !was && firstTone == 0 {
			firstTone = blk * 20
		}
		if was && !det.Present && toneEnd == 0 {
			toneEnd = blk * 20
		}
	}
	if firstTone < 1800 || firstTone > 2500+200 {
		t.Errorf("ANS detected at %d ms, want after 1.8–2.5 s of silence", firstTone)
	}
	if d := toneEnd - firstTone; d < 2600 || d > 4000 {
		t.Errorf("ANS lasted about %d ms, want 3.3 s ± 0.7 s", d)
	}
	// 3.3 s of tone holds 7 reversals (at 0.45, 0.90, … 3.15 s).
	if det.Reversals < 6 || det.Reversals > 7 {
		t.Errorf("%d phase reversals, want 7", det.Reversals)
	}
	if s := ans.State(); s != StateTraining {
		t.Errorf("state after 8 s alone: %v, want training (carrier on, no caller)", s)
	}
}

// --- spandsp ---

func runPeer(t *testing.T, mod Modulation, role Role, imp linesim.Impairments, n int) {
	dir := t.TempDir()
	fromGo, fromPeer := randomBytes(n, 10), randomBytes(n, 11)
	txFile, rxFile := filepath.Join(dir, "tx"), filepath.Join(dir, "rx")
	if err := os.WriteFile(txFile, fromPeer, 0o644); err != nil {
		t.Fatal(err)
	}
	// The peer is the other role: its transmitter is our receiver's channel.
	// spandsp's Bell 103 "channel 1" is the answering modem's 2025/2225 Hz.
	specs := map[Modulation][2]string{V21: {"v21ch1", "v21ch2"}, Bell103: {"bell103ch2", "bell103ch1"}}[mod]
	peerTx, peerRx := specs[0], specs[1]
	cfg := Config{Modulation: mod, Role: role}
	// The peer's DTE starts sending once our modem is surely connected.
	startMillis := "1000"
	if role == Originate {
		peerTx, peerRx = peerRx, peerTx
	} else {
		cfg = fastAnswer(cfg)
		startMillis = "2500"
	}
	peer := spandsppeer.Start(t, imp.Law, "fsk", peerTx, peerRx, txFile, rxFile, startMillis)
	m := New(cfg)
	m.Write(fromGo)
	back := imp
	back.Seed += 100
	line := linesim.New(m, peer, imp, back)
	var got []byte
	var doneAt int64
	line.Run(float64(n)*10/300*1.2+30, func() bool {
		got = append(got, m.TakeReceived()...)
		if len(got) >= n && m.Pending() == 0 && doneAt == 0 {
			doneAt = line.Samples
		}
		// One more second for our last characters to reach the peer.
		return doneAt != 0 && line.Samples > doneAt+8000
	})
	log, err := peer.Wait()
	if err != nil {
		t.Fatal(err)
	}
	peerGot, err := os.ReadFile(rxFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, fromPeer) {
		t.Errorf("spandsp -> Go: %d/%d bytes, %d differ (state %v)\n%s", len(got), n, countDiff(got, fromPeer), m.State(), log)
	}
	// On a noisy line spandsp's receiver may take noise for a character
	// before our carrier starts; those come before our data.
	if extra := len(peerGot) - len(fromGo); extra > 0 && extra <= 4 && bytes.Equal(peerGot[extra:], fromGo) {
		t.Logf("spandsp decoded %d noise characters before our carrier", extra)
		peerGot = peerGot[extra:]
	}
	if !bytes.Equal(peerGot, fromGo) {
		t.Errorf("Go -> spandsp: %d/%d bytes, %d differ\n%s", len(peerGot), n, countDiff(peerGot, fromGo), log)
	}
	t.Logf("%v %v: %d bytes each way in %.1f s of audio", mod, role, n, float64(line.Samples)/8000)
}

// TestSpandspFSK: 10 KB of random bytes each way between our modem and
// spandsp's FSK modem, for each channel pair, role and impairment.
func TestSpandspFSK(t *testing.T) {
	spandsppeer.Binary(t)
	n := 10 * 1024
	if testing.Short() {
		n = 300
	}
	for _, mod := range []Modulation{V21, Bell103} {
		for _, role := range []Role{Answer, Originate} {
			for _, tc := range fskCases {
				t.Run(fmt.Sprintf("%v/%v/%s", mod, role, tc.name), func(t *testing.T) {
					t.Parallel()
					runPeer(t, mod, role, tc.imp, n)
				})
			}
		}
	}
}

// TestSpandspANS: spandsp's modem_connect_tones detector recognises our
// ANS with phase reversals, and our detector spandsp's.
func TestSpandspANS(t *testing.T) {
	for _, law := range []g711.Law{g711.Ulaw, g711.Alaw} {
		t.Run(law.String(), func(t *testing.T) {
			rxPeer := spandsppeer.Start(t, law, "ans-rx")
			gen := tones.NewANS(dsp.DBm0(-13), true)
			f := make([]float64, 160)
			out := make([]int16, 160)
			sink := make([]int16, 160)
			for i := 0; i < 4000/20; i++ {
				gen.Generate(f)
				for j, x := range f {
					out[j] = dsp.Clip16(x)
				}
				rxPeer.Process(out, sink)
			}
			log, err := rxPeer.Wait()
			if err != nil {
				t.Fatal(err)
			}
			// spandsp names ANS with phase reversals "ANS/" (V.25's /ANS).
			if len(spandsppeer.Events(log, "tone ANS/ ")) == 0 {
				t.Errorf("spandsp did not report ANS/PR for our tone:\n%s", log)
			}

			txPeer := spandsppeer.Start(t, law, "ans-tx")
			det := tones.NewANSDetector()
			silence := make([]int16, 160)
			for i := 0; i < 3300/20; i++ {
				txPeer.Process(silence, out)
				for j, x := range out {
					f[j] = float64(x)
				}
				det.Push(f)
			}
			if _, err := txPeer.Wait(); err != nil {
				t.Fatal(err)
			}
			if !det.Detected || det.Reversals < 6 {
				t.Errorf("spandsp's ANS/PR: detected %v, %d reversals (want 7)", det.Detected, det.Reversals)
			}
		})
	}
}

// --- minimodem ---

func needMinimodem(t *testing.T) {
	if _, err := exec.LookPath("minimodem"); err != nil {
		if os.Getenv("ISPBOX_REQUIRE_ROOT") == "1" {
			t.Fatal("minimodem not installed (Debian package minimodem)")
		}
		t.Skip("minimodem not installed (Debian package minimodem)")
	}
}

// minimodemArgs selects the channel: minimodem's "300" is Bell 103
// originate; -M/-S give any other pair.
func minimodemArgs(spec fsk.Spec) []string {
	return []string{"-R", "8000", "-M", fmt.Sprint(spec.Mark), "-S", fmt.Sprint(spec.Space), "300"}
}

// TestMinimodem: 10 KB each way through audio files: ours modulates,
// minimodem demodulates, and the reverse, on all four channels.
func TestMinimodem(t *testing.T) {
	needMinimodem(t)
	n := 10 * 1024
	if testing.Short() {
		n = 1024
	}
	for _, spec := range []fsk.Spec{fsk.V21Ch1, fsk.V21Ch2, fsk.Bell103Orig, fsk.Bell103Ans} {
		t.Run(strings.ReplaceAll(spec.Name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			data := randomBytes(n, 20)

			// Ours -> minimodem.
			atx := async.NewTx(async.Format8N1, async.Queue(data, 30))
			tx := fsk.NewTx(spec, fsk.DefaultLevel, atx.Bit)
			f := make([]float64, (n*10+60)*8000/300)
			tx.Modulate(f)
			pcm := make([]int16, len(f))
			for i, x := range f {
				// Through μ-law, as on the RTP.
				pcm[i] = g711.DecodeUlaw(g711.EncodeUlaw(dsp.Clip16(x)))
			}
			ours := filepath.Join(dir, "ours.wav")
			if err := wav.Write(ours, 8000, pcm); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("minimodem", append([]string{"--rx", "-q", "-f", ours}, minimodemArgs(spec)...)...)
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("minimodem --rx: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("ours -> minimodem: %d/%d bytes, %d differ", len(got), n, countDiff(got, data))
			}

			// minimodem -> ours.
			theirs := filepath.Join(dir, "theirs.wav")
			cmd = exec.Command("minimodem", append([]string{"--tx", "-f", theirs}, minimodemArgs(spec)...)...)
			cmd.Stdin = bytes.NewReader(data)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("minimodem --tx: %v %s", err, out)
			}
			rate, in, err := wav.Read(theirs)
			if err != nil || rate != 8000 {
				t.Fatalf("minimodem's file: rate %d, %v", rate, err)
			}
			var back []byte
			arx := async.NewRx(async.Format8N1, func(b byte) { back = append(back, b) })
			rx := fsk.NewRx(spec, arx.PutBit)
			ff := make([]float64, len(in))
			for i, x := range in {
				ff[i] = float64(g711.DecodeUlaw(g711.EncodeUlaw(x)))
			}
			rx.Demodulate(ff)
			if !bytes.Equal(back, data) {
				t.Errorf("minimodem -> ours: %d/%d bytes, %d differ", len(back), n, countDiff(back, data))
			}
		})
	}
}

// TestSpandspV22bisCall: the whole answer sequence against spandsp's
// V.22bis caller: V.25 silence and ANS with reversals, then the V.22bis
// handshake and 10 KB each way. Reports how long training took.
func TestSpandspV22bisCall(t *testing.T) {
	spandsppeer.Binary(t)
	for _, tc := range []struct {
		name     string
		mod      Modulation
		peerRate string
		imp      linesim.Impairments
		want     int
	}{
		{"v22bis", V22bis, "2400", linesim.Impairments{Law: g711.Ulaw, SNR: 35, Seed: 1}, 2400},
		{"v22bis-alaw-caller1200", V22bis, "1200", linesim.Impairments{Law: g711.Alaw, SNR: 35, Seed: 2}, 1200},
		{"v22", V22, "2400", linesim.Impairments{Law: g711.Ulaw, SNR: 35, Seed: 3}, 1200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := 10 * 1024
			if testing.Short() {
				n = 1024
			}
			dir := t.TempDir()
			fromGo, fromPeer := randomBytes(n, 40), randomBytes(n, 41)
			txFile, rxFile := filepath.Join(dir, "tx"), filepath.Join(dir, "rx")
			if err := os.WriteFile(txFile, fromPeer, 0o644); err != nil {
				t.Fatal(err)
			}
			peer := spandsppeer.Start(t, tc.imp.Law, "v22bis", "call", tc.peerRate, txFile, rxFile, "9000")
			m := New(Config{Modulation: tc.mod, Role: Answer})
			back := tc.imp
			back.Seed += 100
			line := linesim.New(m, peer, tc.imp, back)
			if !line.Run(12, func() bool { return m.State() == StateData }) {
				log, _ := peer.Wait()
				t.Fatalf("no data state after 12 s: %v %+v\n%s", m.State(), m.Stats(), log)
			}
			callTime := float64(line.Samples) / 8000
			ansEnd := float64(tones.BillingDelay+tones.ANSDuration+tones.PostANSSilence) / 1000
			m.Write(fromGo)
			var got []byte
			line.Run(9+float64(n)*10/float64(tc.want)*1.05+2, func() bool {
				got = append(got, m.TakeReceived()...)
				return len(got) >= n && m.Pending() == 0 && line.Samples > int64((9+float64(n)*10/float64(tc.want)+1)*8000)
			})
			st := m.Stats()
			log, err := peer.Wait()
			if err != nil {
				t.Fatal(err)
			}
			peerGot, _ := os.ReadFile(rxFile)
			t.Logf("%s: data after %.2f s of call audio (%.2f s after ANS ended), %d bit/s, SNR %.1f dB, EQ MSE %.4f",
				tc.name, callTime, callTime-ansEnd, st.Rate, st.SNR, st.EQMSE)
			if st.Rate != tc.want {
				t.Errorf("rate %d, want %d", st.Rate, tc.want)
			}
			if callTime-ansEnd > 5 {
				t.Errorf("training took %.2f s after ANS", callTime-ansEnd)
			}
			if !bytes.Equal(got, fromPeer) || !bytes.Equal(peerGot, fromGo) {
				t.Errorf("spandsp->Go %d/%d bytes, %d differ; Go->spandsp %d/%d, %d differ\n%s",
					len(got), n, countDiff(got, fromPeer), len(peerGot), n, countDiff(peerGot, fromGo), log)
			}
		})
	}
}

func TestV22bisPair(t *testing.T) {
	ans := New(fastAnswer(Config{Modulation: V22bis, Role: Answer}))
	org := New(Config{Modulation: V22bis, Role: Originate})
	a2o, o2a := randomBytes(2000, 5), randomBytes(2000, 6)
	ans.Write(a2o)
	org.Write(o2a)
	line := linesim.New(ans, org, linesim.Impairments{Law: g711.Ulaw, SNR: 30, PPM: 100, Seed: 9},
		linesim.Impairments{Law: g711.Alaw, SNR: 30, PPM: -100, Seed: 10})
	var gotA, gotO []byte
	line.Run(30, func() bool {
		gotA = append(gotA, ans.TakeReceived()...)
		gotO = append(gotO, org.TakeReceived()...)
		return len(gotA) >= len(o2a) && len(gotO) >= len(a2o)
	})
	if !bytes.Equal(gotO, a2o) || !bytes.Equal(gotA, o2a) {
		t.Errorf("answer->originate %d/%d, %d differ; originate->answer %d/%d, %d differ (%v %v)",
			len(gotO), len(a2o), countDiff(gotO, a2o), len(gotA), len(o2a), countDiff(gotA, o2a), ans.Stats(), org.Stats())
	}
	if s := ans.Stats(); s.Rate != 2400 || s.Modulation != V22bis {
		t.Errorf("answerer stats %+v", s)
	}
}
