package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/isp-box/isp-box/internal/console"
)

func seed() console.Status {
	return console.Status{
		Started: time.Unix(1700000000, 0),
		Peers: []console.PeerRow{
			{Name: "pap2t-ispmodem", Host: "192.168.1.20", Status: "OK (7 ms)"},
			{Name: "pap2t-client", Status: "UNKNOWN"},
		},
		Lines:    []console.LineRow{{Name: "ttyUSB0", State: "idle", Answered: 3, Errors: 1}},
		Calls:    []console.CallRow{{ID: "1", State: "up"}},
		Counters: []console.Counter{{Name: "sip.auth_failures", Value: 4}},
	}
}

func TestMetrics(t *testing.T) {
	reg := newRegistry(seed)
	// promlint: names, units, help, counter suffixes.
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	want := `
# HELP isp_box_sip_peers SIP peers by status (ok, unreachable, unmonitored, unregistered).
# TYPE isp_box_sip_peers gauge
isp_box_sip_peers{status="ok"} 1
isp_box_sip_peers{status="unmonitored"} 0
isp_box_sip_peers{status="unreachable"} 0
isp_box_sip_peers{status="unregistered"} 1
# HELP isp_box_modem_lines Modem lines by state.
# TYPE isp_box_modem_lines gauge
isp_box_modem_lines{state="idle"} 1
# HELP isp_box_calls Live SIP calls by state.
# TYPE isp_box_calls gauge
isp_box_calls{state="up"} 1
# HELP isp_box_events_total The box's named counters (isp-box status): SIP malformed, bans, auth failures, drops by reason, ...
# TYPE isp_box_events_total counter
isp_box_events_total{counter="sip.auth_failures"} 4
# HELP isp_box_modem_calls_answered_total Calls a line answered (CONNECT), by line.
# TYPE isp_box_modem_calls_answered_total counter
isp_box_modem_calls_answered_total{line="ttyUSB0"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "isp_box_sip_peers", "isp_box_modem_lines", "isp_box_calls",
		"isp_box_events_total", "isp_box_modem_calls_answered_total"); err != nil {
		t.Error(err)
	}
	// The handler serves them with the Go runtime's.
	rec := httptest.NewRecorder()
	Handler(seed).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, w := range []string{"isp_box_ppp_sessions 0", "go_goroutines", "isp_box_start_time_seconds 1.7e+09"} {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
}
