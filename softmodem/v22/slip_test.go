package v22

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/isp-box/isp-box/softmodem/g711"
	"github.com/isp-box/isp-box/softmodem/internal/linesim"
)

// slipper drops k samples of the answerer's input at block at.
type slipper struct {
	linesim.Endpoint
	buf   []int16
	at, k int
	n     int
	rxb   []int16
}

func (s *slipper) Process(rx, tx []int16) {
	if s.buf == nil {
		s.buf = make([]int16, 400)
	}
	s.buf = append(s.buf, rx...)
	if s.n++; s.n == s.at {
		s.buf = s.buf[s.k:]
	}
	if len(s.rxb) < len(rx) {
		s.rxb = make([]int16, len(rx))
	}
	copy(s.rxb, s.buf[:len(rx)])
	s.buf = s.buf[len(rx):]
	s.Endpoint.Process(s.rxb[:len(rx)], tx)
}

// TestRecoverAfterSlip: the answerer's input loses k samples in data (a
// far clock's slip, a jitter buffer resynchronising on a non-packet
// boundary): a carrier phase jump of k × 54° at 1200 Hz that can leave
// the 16-QAM decision-directed loop in a false lock, where the decision
// SNR sits near 13 dB. The receiver asks for a retrain once a second of
// data is below 13 dB, and the caller's next message arrives intact.
func TestRecoverAfterSlip(t *testing.T) {
	for _, k := range []int{1, 7, 37, 123} {
		ans := newEnd(false, 2400, nil)
		call := newEnd(true, 2400, nil)
		sl := &slipper{Endpoint: ans, at: 400, k: k} // 8 s in: in data
		line := linesim.New(sl, call, linesim.Impairments{Law: g711.Ulaw, SNR: 35, Seed: 1}, linesim.Impairments{Law: g711.Ulaw, SNR: 35, Seed: 2})
		line.Run(16, func() bool { return false }) // time for a retrain
		msg := []byte("after the slip, the caller's message")
		call.data = append(call.data, msg...)
		ans.got = nil
		ok := line.Run(20, func() bool { return bytes.HasSuffix(ans.got, msg) })
		t.Logf("slip of %d samples: message through %v at %.1f s; answerer %+v", k, ok, float64(line.Samples)/8000, ans.p.Stats())
		if !ok {
			t.Errorf("slip of %d samples: no recovery; answerer %+v (rx stage %d)", k, ans.p.Stats(), ans.p.rx)
		}
	}
}

// TestLossImpact: what lost RTP packets do to data at 2400 bit/s: each
// lost 20 ms is a 48-bit hole (no V.42 here to resend it). The caller
// receives numbered 12-byte lines from the answerer; the test counts the
// lines that do not arrive intact: the hole's own, and the few while the
// descrambler (17 bits) and the start/stop framing resynchronise. The
// receiver freezes its adaptation over the hole, so it neither retrains
// nor loses lock.
func TestLossImpact(t *testing.T) {
	for _, tc := range []struct {
		name    string
		holes   [][2]int // [from, to) in 20 ms blocks of the answerer's output
		maxLost int      // lines
	}{
		{"1 packet", [][2]int{{400, 401}}, 5},
		{"2 packets", [][2]int{{400, 402}}, 6},
		{"5 packets (100 ms)", [][2]int{{400, 405}}, 8},
		{"1 packet every 2 s", [][2]int{{400, 401}, {500, 501}, {600, 601}, {700, 701}, {800, 801}}, 20},
	} {
		var data []byte
		for i := 0; i < 1500; i++ { // 18 KB: about 75 s at 2400 bit/s, more than the run
			data = append(data, []byte(fmt.Sprintf("line %05d\r\n", i))...)
		}
		ans := newEnd(false, 2400, nil)
		call := newEnd(true, 2400, nil)
		h := &holes{Endpoint: ans, holes: tc.holes}
		line := linesim.New(h, call, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 1}, linesim.Impairments{Law: g711.Ulaw, SNR: 30, Seed: 2})
		line.Run(5, func() bool { return ans.p.Ready() && call.p.Ready() })
		ans.data = append(ans.data, data...)
		line.Run(20, func() bool { return false }) // 15 s of data: holes at 8-16 s
		got := string(call.got)
		sent := (len(data) - len(ans.data)) / 12
		intact := 0
		for i := 0; i < sent; i++ {
			if strings.Contains(got, fmt.Sprintf("line %05d\r\n", i)) {
				intact++
			}
		}
		t.Logf("%s: %d of %d lines sent arrived intact (%d lost or garbled); retrains answerer %d caller %d",
			tc.name, intact, sent, sent-intact, ans.p.Stats().Retrains, call.p.Stats().Retrains)
		if sent-intact > tc.maxLost || ans.p.Stats().Retrains+call.p.Stats().Retrains > 0 {
			t.Errorf("%s: %d lines lost, want at most %d, and no retrain", tc.name, sent-intact, tc.maxLost)
		}
	}
}

// holes silences the endpoint's output over the given blocks.
type holes struct {
	linesim.Endpoint
	holes [][2]int
	n     int
}

func (h *holes) Process(rx, tx []int16) {
	h.Endpoint.Process(rx, tx)
	h.n++
	for _, r := range h.holes {
		if h.n >= r[0] && h.n < r[1] {
			clear(tx)
		}
	}
}
