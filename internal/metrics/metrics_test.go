package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/status"
)

// fakeStatus is a status that the test changes between scrapes.
type fakeStatus struct {
	mu sync.Mutex
	st console.Status
}

func (f *fakeStatus) get() console.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeStatus) set(fn func(*console.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

func seed() console.Status {
	return console.Status{
		Version: "v1.2.3",
		Started: time.Unix(1700000000, 0),
		Peers: []status.Peer{
			{Name: "pap2t-ispmodem", Host: netip.MustParseAddr("192.168.1.20"), Status: "OK (7 ms)"},
			{Name: "pap2t-client", Status: "UNKNOWN"},
		},
		Lines: []status.Line{{Name: "ttyUSB0", State: "idle", Answered: 3, Errors: 1}},
		Calls: []status.Call{{ID: "1", State: "up"}},
		Counters: []console.Counter{
			{Name: "sip.auth_failures", Value: 4}, {Name: "sip.malformed", Value: 2}, {Name: "sip.calls_shed", Value: 1},
			{Name: "net.dropped.spoofed", Value: 9}, {Name: "something.new", Value: 5},
		},
		Bus: console.BusStats{Published: 10, Subscribers: []bus.SubStats{
			{Name: "store", Reliable: true, Delivered: 8, Queued: 2, HighWater: 5},
			{Name: "web", Delivered: 7, Dropped: 3, Queued: 1},
			{Name: "web", Delivered: 1, Dropped: 1, Queued: 4},
		}},
	}
}

// start runs m on b until the test ends.
func start(t *testing.T, m *Metrics) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestStatusMetrics(t *testing.T) {
	m := New(seed, nil)
	// promlint: names, units, help, counter suffixes.
	if problems, err := testutil.GatherAndLint(m.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	want := `
# HELP isp_box_sip_peers SIP peers by status: ok (qualify answered in time), unreachable (or lagged), unmonitored (registered, qualify off), unregistered.
# TYPE isp_box_sip_peers gauge
isp_box_sip_peers{status="ok"} 1
isp_box_sip_peers{status="unmonitored"} 0
isp_box_sip_peers{status="unreachable"} 0
isp_box_sip_peers{status="unregistered"} 1
# HELP isp_box_sip_calls Live SIP calls by state (routing, ringing, up, ending).
# TYPE isp_box_sip_calls gauge
isp_box_sip_calls{state="up"} 1
# HELP isp_box_sip_dropped_messages_total SIP datagrams dropped unanswered at the request entry, by reason: malformed, banned, rate_limited, queue_full, amplification (the answer would have been larger than the request), guess_limit (per-name password guess limit).
# TYPE isp_box_sip_dropped_messages_total counter
isp_box_sip_dropped_messages_total{reason="malformed"} 2
# HELP isp_box_sip_calls_shed_total INVITEs answered 503 because the box was full.
# TYPE isp_box_sip_calls_shed_total counter
isp_box_sip_calls_shed_total 1
# HELP isp_box_net_dropped_packets_total Packets the network dropped, by reason (spoofed, isolated, malformed, no_route, forbidden, ping_denied, ttl_expired, flow_limit).
# TYPE isp_box_net_dropped_packets_total counter
isp_box_net_dropped_packets_total{reason="spoofed"} 9
# HELP isp_box_events_total The box's named counters (isp-box status) that have no metric of their own.
# TYPE isp_box_events_total counter
isp_box_events_total{counter="something.new"} 5
# HELP isp_box_modem_calls_answered_total Calls a line answered (CONNECT), by line.
# TYPE isp_box_modem_calls_answered_total counter
isp_box_modem_calls_answered_total{line="ttyUSB0"} 3
# HELP isp_box_bus_queued_events Events waiting for a bus subscriber, by subscriber.
# TYPE isp_box_bus_queued_events gauge
isp_box_bus_queued_events{subscriber="store"} 2
isp_box_bus_queued_events{subscriber="web"} 5
# HELP isp_box_bus_queue_high_water_events The most events ever queued for a reliable bus subscriber, by subscriber.
# TYPE isp_box_bus_queue_high_water_events gauge
isp_box_bus_queue_high_water_events{subscriber="store"} 5
isp_box_bus_queue_high_water_events{subscriber="web"} 0
# HELP isp_box_bus_dropped_events_total Events a live lossy bus subscriber lost because its queue was full, by subscriber.
# TYPE isp_box_bus_dropped_events_total counter
isp_box_bus_dropped_events_total{subscriber="store"} 0
isp_box_bus_dropped_events_total{subscriber="web"} 4
# HELP isp_box_build_info Always 1; the labels say which isp-box runs.
# TYPE isp_box_build_info gauge
isp_box_build_info{version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "isp_box_sip_peers", "isp_box_sip_calls",
		"isp_box_sip_dropped_messages_total", "isp_box_sip_calls_shed_total", "isp_box_net_dropped_packets_total",
		"isp_box_events_total", "isp_box_modem_calls_answered_total", "isp_box_bus_queued_events",
		"isp_box_bus_queue_high_water_events", "isp_box_bus_dropped_events_total", "isp_box_build_info"); err != nil {
		t.Error(err)
	}
	// Every line state is there from the start, 0 when no line is in it.
	if n := testutil.CollectAndCount(collector{m}, "isp_box_modem_lines"); n != len(lineStates) {
		t.Errorf("isp_box_modem_lines: %d series, want %d", n, len(lineStates))
	}
	// The handler serves them with the Go runtime's and the process's.
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, w := range []string{"isp_box_ppp_sessions 0", "go_goroutines", "process_start_time_seconds", "isp_box_start_time_seconds 1.7e+09"} {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
}

// TestCountedFromBus: calls by outcome, authentication failures by
// reason, bans, PPP sessions by cause and the PPP traffic totals, which
// must never go backwards while sessions come and go.
func TestCountedFromBus(t *testing.T) {
	b := bus.New(nil)
	fs := &fakeStatus{}
	m := New(fs.get, b)
	start(t, m)
	// check waits until every series has its value: the events are
	// counted by Run's goroutine. A key is name|label value|...
	check := func(when string, want map[string]float64) {
		t.Helper()
		var bad []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			bad = bad[:0]
			for name, w := range want {
				parts := strings.Split(name, "|")
				if got, ok := value(t, m.Registry(), parts[0], parts[1:]...); !ok || got != w {
					bad = append(bad, fmt.Sprintf("%s = %v (found %v), want %v", name, got, ok, w))
				}
			}
			if len(bad) == 0 || time.Now().After(deadline) {
				break
			}
		}
		sort.Strings(bad)
		for _, b := range bad {
			t.Errorf("%s: %s", when, b)
		}
	}

	for _, s := range []string{"ANSWER", "ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "WEIRD"} {
		b.Publish(bus.CallEnded{CallID: "x", Status: s})
	}
	for _, r := range []string{"wrong password", "no such peer", "no such peer", "username mismatch", "ACL: peer [x] deny"} {
		b.Publish(bus.AuthFailed{User: "x", Reason: r})
	}
	b.Publish(bus.SourceBanned{})
	b.Publish(bus.PPPUp{Session: "s1"})
	b.Publish(bus.PPPUp{Session: "s2"})
	fs.set(func(st *console.Status) {
		st.Sessions = []console.Session{
			{Session: status.Session{ID: "s1", Line: "ttyUSB0", User: "dial", BytesIn: 100, BytesOut: 1000, PktsIn: 3, PktsOut: 4, Dropped: 2, FCSErrs: 1}},
			{Session: status.Session{ID: "s2", Line: "ttyUSB1", User: "bob", BytesIn: 10, BytesOut: 20, PktsIn: 1, PktsOut: 2, Dropped: 7, FCSErrs: 3}},
		}
	})

	check("calls and failures", map[string]float64{
		"isp_box_sip_calls_ended_total|answered": 2, "isp_box_sip_calls_ended_total|busy": 1,
		"isp_box_sip_calls_ended_total|no_answer": 1, "isp_box_sip_calls_ended_total|cancelled": 1,
		"isp_box_sip_calls_ended_total|congestion": 1, "isp_box_sip_calls_ended_total|unavailable": 1,
		"isp_box_sip_calls_ended_total|other":            1,
		"isp_box_sip_auth_failures_total|wrong_password": 1, "isp_box_sip_auth_failures_total|no_such_peer": 2,
		"isp_box_sip_auth_failures_total|username_mismatch": 1, "isp_box_sip_auth_failures_total|acl": 1,
		"isp_box_sip_auth_failures_total|other": 0,
	})
	check("two live sessions", map[string]float64{
		"isp_box_sip_bans_total":                                    1,
		"isp_box_ppp_sessions_started_total":                        2,
		"isp_box_ppp_sessions":                                      2,
		"isp_box_ppp_session_receive_bytes_total|s1|ttyUSB0|dial":   100,
		"isp_box_ppp_session_transmit_packets_total|s2|ttyUSB1|bob": 2,
		"isp_box_ppp_receive_bytes_total":                           110,
		"isp_box_ppp_transmit_bytes_total":                          1020,
		"isp_box_ppp_receive_packets_total":                         4,
		"isp_box_ppp_transmit_packets_total":                        6,
		"isp_box_ppp_session_dropped_packets_total|s2|ttyUSB1|bob":  7,
		"isp_box_ppp_session_fcs_errors_total|s2|ttyUSB1|bob":       3,
		"isp_box_ppp_dropped_packets_total":                         9,
		"isp_box_ppp_fcs_errors_total":                              4,
	})

	// s1 ends: first it leaves the registry (a scrape in between must
	// not lose its bytes), then its record arrives with a few more.
	fs.set(func(st *console.Status) { st.Sessions = st.Sessions[1:] })
	check("s1 gone, record not yet counted", map[string]float64{"isp_box_ppp_receive_bytes_total": 110,
		"isp_box_ppp_dropped_packets_total": 9, "isp_box_ppp_fcs_errors_total": 4})
	b.Publish(bus.PPPDown{Session: "s1", BytesIn: 150, BytesOut: 1000, PktsIn: 5, PktsOut: 4, Dropped: 5, FCSErrors: 2, Cause: "carrier lost"})
	check("s1 counted", map[string]float64{
		"isp_box_ppp_receive_bytes_total":               160,
		"isp_box_ppp_receive_packets_total":             6,
		"isp_box_ppp_dropped_packets_total":             12,
		"isp_box_ppp_fcs_errors_total":                  5,
		"isp_box_ppp_sessions_ended_total|carrier lost": 1,
		"isp_box_ppp_sessions":                          1,
	})
	if n := testutil.CollectAndCount(collector{m}, "isp_box_ppp_session_receive_bytes_total"); n != 1 {
		t.Errorf("%d per-session series after s1 ended, want 1", n)
	}

	// s2's record arrives while the registry still lists it: counted once.
	b.Publish(bus.PPPDown{Session: "s2", BytesIn: 10, BytesOut: 20, PktsIn: 1, PktsOut: 2, Dropped: 7, FCSErrors: 3, Cause: "peer terminated"})
	check("s2's record", map[string]float64{"isp_box_ppp_sessions_ended_total|peer terminated": 1})
	check("s2 counted, still listed", map[string]float64{"isp_box_ppp_receive_bytes_total": 160, "isp_box_ppp_transmit_bytes_total": 1020})
	fs.set(func(st *console.Status) { st.Sessions = nil })
	check("all gone", map[string]float64{"isp_box_ppp_receive_bytes_total": 160, "isp_box_ppp_transmit_bytes_total": 1020,
		"isp_box_ppp_dropped_packets_total": 12, "isp_box_ppp_fcs_errors_total": 5})

	// A page that read too slowly and went away leaves its lost events
	// in the total.
	slow := b.Subscribe("web", 1, nil)
	for range 3 {
		b.Publish(bus.Notice{Text: "x"})
	}
	slow.Close()
	check("a slow subscriber gone", map[string]float64{"isp_box_bus_lost_events_total": 2})

	if problems, err := testutil.GatherAndLint(m.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// value gathers reg and returns the value of the series of name whose
// label values are labels (in any order); false if there is none.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			if len(s.GetLabel()) != len(labels) {
				continue
			}
			// Gather sorts labels by name; compare as sets.
			have := []string{}
			for _, l := range s.GetLabel() {
				have = append(have, l.GetValue())
			}
			want := append([]string(nil), labels...)
			sort.Strings(have)
			sort.Strings(want)
			for i := range have {
				if have[i] != want[i] {
					continue series
				}
			}
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue(), true
			case s.Gauge != nil:
				return s.Gauge.GetValue(), true
			}
		}
	}
	return 0, false
}

// TestREADME: the README's metrics table lists every metric the box
// exposes, and nothing else.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(isp_box_[a-z_]+)`").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	for _, d := range allDescs {
		name := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())[1]
		if !documented[name] {
			t.Errorf("README's metrics table lacks %s", name)
		}
		delete(documented, name)
	}
	for name := range documented {
		t.Errorf("README's metrics table lists %s, which the box does not expose", name)
	}
}
