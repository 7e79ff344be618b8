package console

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/status"
)

// A call the box's own modem answered shows its modem's figures under
// the calls, lines and sessions tables, and in the JSON status.
func TestRenderSoftmodem(t *testing.T) {
	now := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	m := &bus.ModemStats{CallID: "0000000a", Modulation: "V.22bis", Rate: 2400, State: "data", SNR: 30.14, EQMSE: 0.00097,
		Retrains: 1, RTPLost: 3, RTPLate: 2, RTPJitter: 4.25, BytesIn: 2048, BytesOut: 512}
	want := "V.22bis 2400 bit/s data, SNR 30.1 dB, EQ MSE 0.0010, 1 retrains, RTP lost 3 late 2 jitter 4.2 ms"
	var b bytes.Buffer
	if err := renderCalls(&b, []status.Call{{ID: "0000000a", From: "pap2t-client", Exten: "5550000", To: "Modem/V.22bis/2400",
		State: "up", Start: now, Answer: now, MediaMode: "modem", Codec: "ulaw", Modem: m}}, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "0000000a: "+want) || !strings.Contains(b.String(), "4.2 ms") {
		t.Errorf("calls:\n%s", b.String())
	}
	b.Reset()
	if err := renderLines(&b, []status.Line{{Name: "softmodem/0000000a", Device: "softmodem/0000000a", State: "connected",
		Since: now, CallID: "0000000a", LastConnect: "CONNECT 2400/V.22bis", Caps: "softmodem", Modem: m}}, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "softmodem/0000000a: "+want) {
		t.Errorf("lines:\n%s", b.String())
	}
	b.Reset()
	if err := renderSessions(&b, []Session{{Session: status.Session{ID: "s1", Line: "softmodem/0000000a", Start: now}, Modem: m}}, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "s1: "+want+", 2.0 KiB in, 512 B out") {
		t.Errorf("sessions:\n%s", b.String())
	}
	j, err := json.Marshal(status.Line{Name: "softmodem/0000000a", Modem: m})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"modulation":"V.22bis"`, `"rate":2400`, `"snr_db":30.14`, `"eq_mse":0.00097`, `"retrains":1`, `"rtp_lost":3`, `"rtp_jitter_ms":4.25`, `"bytes_in":2048`} {
		if !strings.Contains(string(j), k) {
			t.Errorf("JSON lacks %s: %s", k, j)
		}
	}
}
