package metrics_test

import (
	"context"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/isp-box/isp-box/examples"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/sim/ata"
)

// scrape is one /metrics read, parsed by Prometheus' own text parser.
type scrape map[string]*dto.MetricFamily

func get(t *testing.T, ctx context.Context, url string) scrape {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, r.Status)
	}
	var p expfmt.TextParser
	mfs, err := p.TextToMetricFamilies(r.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mfs
}

// v is the value of the series of name whose labels include every
// name=value pair given; -1 if there is none.
// getWhen scrapes url until ready says the bus-driven series have caught
// up, or d has passed; it returns the last scrape either way, for the
// caller's checks to say what is missing.
func getWhen(t *testing.T, ctx context.Context, url string, d time.Duration, ready func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := get(t, ctx, url)
		if ready(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s scrape) v(name string, labels ...string) float64 {
	mf := s[name]
	if mf == nil {
		return -1
	}
series:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

// TestMetricsDuringDemoCall scrapes /metrics of the demo's box (the
// embedded examples/pap2t.conf, the virtual ATA, emulated modems) before,
// during and after the demo's call, and checks that the numbers moved as
// the call and its PPP session did.
func TestMetricsDuringDemoCall(t *testing.T) {
	if testing.Short() {
		t.Skip("dials in through the whole chain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, err := config.Parse("examples/pap2t.conf", examples.PAP2T, examples.FS)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Box.Metrics = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.PBX.General.MaxAuthFailures = 3
	w, err := demo.Start(ctx, demo.WorldOptions{Config: cfg, RingInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	url := "http://" + w.Box.MetricsAddr() + "/metrics"
	client := ""
	for _, p := range w.Peers {
		if _, ok := w.Clients[p]; ok {
			client = p
		}
	}
	line := cfg.Lines[0].Modem.Name

	before := get(t, ctx, url)
	expect(t, "before the call", before, map[string]float64{
		"isp_box_sip_peers|status|ok":                          2,
		"isp_box_modem_lines|state|idle":                       float64(len(cfg.Lines)),
		"isp_box_ppp_sessions":                                 0,
		"isp_box_sip_calls_ended_total|outcome|answered":       0,
		"isp_box_ppp_sessions_started_total":                   0,
		"isp_box_ppp_receive_bytes_total":                      0,
		"isp_box_modem_calls_answered_total|line|" + line:      0,
		"isp_box_bus_dropped_events_total|subscriber|store":    0,
		"isp_box_bus_queued_events|subscriber|metrics":         -2, // present, any value
		"isp_box_bus_queue_high_water_events|subscriber|store": -2,
		"isp_box_net_flows":                                    0,
	})

	sess, err := demo.Dial(ctx, w.Clients[client].Path(), demo.DialOptions{Number: "88567682", User: "dial", Password: "dial"})
	if err != nil {
		t.Fatal(err)
	}
	// The totals follow the bus: its PPPUp and the modem's answer reach
	// the metrics subscriber a moment after the client sees IPCP up.
	during := getWhen(t, ctx, url, 10*time.Second, func(s scrape) bool {
		return s.v("isp_box_ppp_sessions_started_total") >= 1 && s.v("isp_box_modem_calls_answered_total", "line", line) >= 1
	})
	expect(t, "PPP up", during, map[string]float64{
		"isp_box_sip_calls|state|up":                      1,
		"isp_box_modem_lines|state|connected":             1,
		"isp_box_ppp_sessions":                            1,
		"isp_box_ppp_sessions_started_total":              1,
		"isp_box_modem_calls_answered_total|line|" + line: 1,
	})
	rx0 := during.v("isp_box_ppp_session_receive_bytes_total", "line", line)
	tx0 := during.v("isp_box_ppp_session_transmit_bytes_total", "line", line)
	// The seed's ttyUSB0 is noauth (the user logs in at the text prompt
	// in the real setup): the session has no user; it counts IP octets,
	// none yet.
	if rx0 != 0 || tx0 != 0 {
		t.Errorf("the session's IP bytes before any IP packet: receive %v, transmit %v, want 0 (or no series)", rx0, tx0)
	}
	// Traffic through the session moves its counters and the totals.
	for range 5 {
		if _, err := sess.Net.Ping(ctx, sess.PPP.Remote()); err != nil {
			t.Fatal(err)
		}
	}
	after := get(t, ctx, url)
	rx1 := after.v("isp_box_ppp_session_receive_bytes_total", "line", line)
	pk1 := after.v("isp_box_ppp_session_transmit_packets_total", "line", line)
	if tx1 := after.v("isp_box_ppp_session_transmit_bytes_total", "line", line); tx1 < tx0+5*28 {
		t.Errorf("5 ping replies (at least 28 bytes of IP each): session transmit bytes %v -> %v", tx0, tx1)
	}
	if rx1 < rx0+5*28 || pk1 < during.v("isp_box_ppp_session_transmit_packets_total", "line", line)+5 {
		t.Errorf("5 pings (at least 28 bytes of IP each): session receive bytes %v -> %v, transmit packets -> %v", rx0, rx1, pk1)
	}
	if tot := after.v("isp_box_ppp_receive_bytes_total"); tot != rx1 {
		t.Errorf("receive bytes total %v, the only session's %v", tot, rx1)
	}

	if err := sess.HangUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitLinesIdle(ctx); err != nil {
		t.Fatal(err)
	}
	// The call record and the session record are counted from the bus,
	// right after the lines are idle.
	end := getWhen(t, ctx, url, 5*time.Second, func(s scrape) bool {
		return s.v("isp_box_sip_calls_ended_total", "outcome", "answered") == 1
	})
	expect(t, "after hang-up", end, map[string]float64{
		"isp_box_sip_calls_ended_total|outcome|answered": 1,
		"isp_box_sip_calls_ended_total|outcome|busy":     0,
		"isp_box_ppp_sessions":                           0,
		"isp_box_modem_lines|state|idle":                 float64(len(cfg.Lines)),
		"isp_box_modem_lines|state|connected":            0,
	})
	if n := sum(end, "isp_box_ppp_sessions_ended_total"); n != 1 {
		t.Errorf("sessions ended: %v, want 1", n)
	}
	if _, ok := end["isp_box_ppp_session_receive_bytes_total"]; ok {
		t.Errorf("a per-session series is left after the session ended")
	}
	if tot := end.v("isp_box_ppp_receive_bytes_total"); tot < rx1 {
		t.Errorf("receive bytes total went back: %v, was %v", tot, rx1)
	}
	if end.v("isp_box_bus_published_events_total") <= before.v("isp_box_bus_published_events_total") {
		t.Errorf("bus published events did not move")
	}
	if end.v("isp_box_bus_delivered_events_total", "subscriber", "metrics") < 3 {
		t.Errorf("metrics' own subscription delivered %v events, want call.ended, ppp.up, ppp.down", end.v("isp_box_bus_delivered_events_total", "subscriber", "metrics"))
	}
	if end.v("go_goroutines") <= 0 {
		t.Errorf("no Go runtime metrics")
	}

	// A second ATA with a wrong password on one line and a peer the box
	// does not know on the other: authentication failures by reason, and
	// the ban that follows (the real PBX's digest check and ban).
	bad, err := ata.New(ata.Options{Lines: []ata.LineConfig{
		{Name: "guess", User: "pap2t-client", Password: "guess", Registrar: w.Box.SIPAddr(), RetryInterval: 100 * time.Millisecond},
		{Name: "stranger", User: "nosuch", Password: "x", Registrar: w.Box.SIPAddr(), RetryInterval: 100 * time.Millisecond},
	}})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() { adone <- bad.Run(actx) }()
	defer func() { acancel(); <-adone }()
	var banned scrape
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		banned = get(t, ctx, url)
		if banned.v("isp_box_sip_bans_total") >= 1 && banned.v("isp_box_sip_auth_failures_total", "reason", "no_such_peer") >= 1 {
			break
		}
	}
	// Both lines are one source address: their failures together reach
	// the ban's threshold.
	wrong, stranger := banned.v("isp_box_sip_auth_failures_total", "reason", "wrong_password"), banned.v("isp_box_sip_auth_failures_total", "reason", "no_such_peer")
	if wrong < 1 || stranger < 1 || wrong+stranger < float64(cfg.PBX.General.MaxAuthFailures) {
		t.Errorf("auth failures: wrong_password %v, no_such_peer %v; want each at least 1 and together at least %d (the ban's threshold)",
			wrong, stranger, cfg.PBX.General.MaxAuthFailures)
	}
	if banned.v("isp_box_sip_bans_total") < 1 || banned.v("isp_box_sip_banned_sources") < 1 {
		t.Errorf("bans %v, banned now %v; want the guessing source banned", banned.v("isp_box_sip_bans_total"), banned.v("isp_box_sip_banned_sources"))
	}
}

// expect checks want, keyed name|label|value|...; -2 = present.
func expect(t *testing.T, when string, s scrape, want map[string]float64) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts := strings.Split(k, "|")
		got := s.v(parts[0], parts[1:]...)
		switch w := want[k]; {
		case w == -2 && got < 0:
			t.Errorf("%s: %s missing", when, k)
		case w != -2 && got != w:
			t.Errorf("%s: %s = %v, want %v", when, k, got, w)
		}
	}
}

func sum(s scrape, name string) float64 {
	var n float64
	if mf := s[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}
