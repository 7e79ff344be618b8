package v22

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/isp-box/isp-box/softmodem/g711"
	"github.com/isp-box/isp-box/softmodem/internal/linesim"
	"github.com/isp-box/isp-box/softmodem/internal/spandsppeer"
)

type spandspResult struct {
	trainedAt    float64 // seconds of audio
	rate         int
	toGo, toPeer int // byte errors (missing or wrong)
	log          string
	stats        Stats
}

// runSpandsp runs our pump against spandsp's V.22bis modem in the other
// role and exchanges n random bytes each way.
func runSpandsp(t *testing.T, caller bool, ourRate, peerRate int, imp linesim.Impairments, n int) spandspResult {
	t.Helper()
	dir := t.TempDir()
	fromGo, fromPeer := randomBytes(n, 30), randomBytes(n, 31)
	txFile, rxFile := filepath.Join(dir, "tx"), filepath.Join(dir, "rx")
	if err := os.WriteFile(txFile, fromPeer, 0o644); err != nil {
		t.Fatal(err)
	}
	role := "call"
	if caller {
		role = "answer"
	}
	// The peer's DTE sends once the modems are surely trained.
	peer := spandsppeer.Start(t, imp.Law, "v22bis", role, fmt.Sprint(peerRate), txFile, rxFile, "5000")
	e := newEnd(caller, ourRate, fromGo)
	// Our DTE likewise holds its data until the handshake is over.
	held := e.data
	e.data = nil
	back := imp
	back.Seed += 10
	line := linesim.New(e, peer, imp, back)
	var res spandspResult
	line.Run(10, func() bool { return e.p.Ready() })
	res.trainedAt = float64(line.Samples) / 8000
	res.rate = e.p.Rate()
	e.data = held
	bitRate := max(res.rate, 1200)
	line.Run(5+float64(n)*10/float64(bitRate)*1.05+3, func() bool {
		return len(e.got) >= n && len(e.data) == 0 && line.Samples > 5*8000+int64(n*10*8000/bitRate)+16000
	})
	res.stats = e.p.Stats()
	log, err := peer.Wait()
	if err != nil {
		t.Fatal(err)
	}
	res.log = log
	peerGot, err := os.ReadFile(rxFile)
	if err != nil {
		t.Fatal(err)
	}
	res.toGo = byteErrors(e.got, fromPeer)
	res.toPeer = byteErrors(peerGot, fromGo)
	return res
}

func byteErrors(got, want []byte) int {
	n := 0
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || got[i] != want[i] {
			n++
		}
	}
	return n
}

func TestSpandspV22bis(t *testing.T) {
	spandsppeer.Binary(t)
	n := 100 * 1024
	if testing.Short() {
		n = 4 * 1024
	}
	for _, tc := range []struct {
		name              string
		caller            bool
		ourRate, peerRate int
		imp               linesim.Impairments
		wantRate          int
	}{
		{"answer-2400-ulaw", false, 2400, 2400, linesim.Impairments{Law: g711.Ulaw}, 2400},
		{"answer-2400-alaw-30dB", false, 2400, 2400, linesim.Impairments{Law: g711.Alaw, SNR: 30, Seed: 1}, 2400},
		{"answer-1200-fallback", false, 2400, 1200, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 2}, 1200},
		{"originate-2400-30dB", true, 2400, 2400, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 3}, 2400},
		{"originate-1200-30dB", true, 1200, 2400, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 4}, 1200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runSpandsp(t, tc.caller, tc.ourRate, tc.peerRate, tc.imp, n)
			t.Logf("trained at %d bit/s in %.2f s of audio; %d bytes each way: %d errors to us, %d to spandsp; %+v",
				r.rate, r.trainedAt, n, r.toGo, r.toPeer, r.stats)
			if r.rate != tc.wantRate {
				t.Fatalf("rate %d, want %d\n%s", r.rate, tc.wantRate, r.log)
			}
			if r.trainedAt > 5+1 {
				t.Errorf("training took %.2f s", r.trainedAt)
			}
			if r.toGo != 0 || r.toPeer != 0 {
				t.Errorf("byte errors: %d to us, %d to spandsp\n%s", r.toGo, r.toPeer, r.log)
			}
		})
	}
}

// TestSpandspV22bisImpaired reports (does not require) the error rate at
// 20 dB SNR and with the far sample clock ±100 ppm off.
func TestSpandspV22bisImpaired(t *testing.T) {
	spandsppeer.Binary(t)
	n := 20 * 1024
	if testing.Short() {
		t.Skip("long: error rates at 20 dB and ±100 ppm")
	}
	for _, tc := range []struct {
		name string
		imp  linesim.Impairments
	}{
		{"20dB", linesim.Impairments{Law: g711.Ulaw, SNR: 20, Seed: 5}},
		{"25dB", linesim.Impairments{Law: g711.Ulaw, SNR: 25, Seed: 6}},
		{"30dB+100ppm", linesim.Impairments{Law: g711.Ulaw, SNR: 30, PPM: 100, Seed: 7}},
		{"30dB-100ppm", linesim.Impairments{Law: g711.Ulaw, SNR: 30, PPM: -100, Seed: 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runSpandsp(t, false, 2400, 2400, tc.imp, n)
			t.Logf("trained at %d bit/s in %.2f s; %d bytes each way: byte errors %d to us (%.2g), %d to spandsp (%.2g); %+v",
				r.rate, r.trainedAt, n, r.toGo, float64(r.toGo)/float64(n), r.toPeer, float64(r.toPeer)/float64(n), r.stats)
			if r.rate == 0 {
				t.Errorf("did not train\n%s", r.log)
			}
		})
	}
}
