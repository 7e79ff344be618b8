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

// TestSpandspRetrain: in data at 2400 bit/s our calling modem asks
// spandsp's answering modem for a retrain (S1, V.22bis §6.3.1.3); it
// answers with its own S1 and both come back to data at 2400 bit/s, and
// bytes flow again. (Against spandsp 0.0.6 as the caller the retrain never
// ends: its calling side, after its S1, keeps sending scrambled ones at
// 1200 bit/s, since only the initial handshake moves it on to 2400.)
func TestSpandspRetrain(t *testing.T) {
	spandsppeer.Binary(t)
	dir := t.TempDir()
	txFile, rxFile := filepath.Join(dir, "tx"), filepath.Join(dir, "rx")
	if err := os.WriteFile(txFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	imp := linesim.Impairments{Law: g711.Ulaw, SNR: 35, Seed: 9}
	peer := spandsppeer.Start(t, imp.Law, "v22bis", "answer", "2400", txFile, rxFile, "0")
	e := newEnd(true, 2400, nil)
	line := linesim.New(e, peer, imp, imp)
	if !line.Run(6, func() bool { return e.p.Ready() }) {
		t.Fatal("no training")
	}
	line.Run(float64(line.Samples)/8000+2, func() bool { return false })
	e.p.Retrain()
	start := line.Samples
	if !line.Run(float64(line.Samples)/8000+5, func() bool { return e.p.Ready() }) {
		log, _ := peer.Wait()
		t.Fatalf("no data after the retrain: rx %d tx %d\n%s", e.p.rx, e.p.tx, log)
	}
	t.Logf("retrain with spandsp took %.2f s, back at %d bit/s", float64(line.Samples-start)/8000, e.p.Rate())
	msg := randomBytes(200, 5)
	e.data = msg
	line.Run(float64(line.Samples)/8000+3, func() bool { return false })
	log, err := peer.Wait()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(rxFile)
	// spandsp hands on a character or two it decoded while the line was
	// retraining; our data follows them intact.
	if extra := len(got) - len(msg); extra > 0 && extra <= 2 {
		t.Logf("spandsp decoded %d characters during the retrain", extra)
		got = got[extra:]
	}
	if byteErrors(got, msg) != 0 || e.p.Rate() != 2400 {
		t.Errorf("after the retrain spandsp got %d bytes, %d errors; rate %d\n%s", len(got), byteErrors(got, msg), e.p.Rate(), log)
	}
	if len(spandsppeer.Events(log, "retrain occurred")) != 1 {
		t.Errorf("spandsp did not report one retrain:\n%s", log)
	}
}
