package v22

import (
	"bytes"
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
