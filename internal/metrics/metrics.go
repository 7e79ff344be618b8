// Package metrics exposes the box's status to Prometheus: the same
// console.Status the CLI renders, read at each scrape, so the numbers on
// /metrics and in `isp-box status` cannot disagree. Names follow
// Prometheus' conventions (prometheus.io/docs/practices/naming): the
// isp_box_ prefix, _total for counters, base units.
package metrics

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/isp-box/isp-box/internal/console"
)

var (
	peersDesc    = prometheus.NewDesc("isp_box_sip_peers", "SIP peers by status (ok, unreachable, unmonitored, unregistered).", []string{"status"}, nil)
	linesDesc    = prometheus.NewDesc("isp_box_modem_lines", "Modem lines by state.", []string{"state"}, nil)
	callsDesc    = prometheus.NewDesc("isp_box_calls", "Live SIP calls by state.", []string{"state"}, nil)
	sessionsDesc = prometheus.NewDesc("isp_box_ppp_sessions", "Live PPP sessions.", nil, nil)
	answered     = prometheus.NewDesc("isp_box_modem_calls_answered_total", "Calls a line answered (CONNECT), by line.", []string{"line"}, nil)
	lineErrors   = prometheus.NewDesc("isp_box_modem_line_errors_total", "Errors a line reported, by line.", []string{"line"}, nil)
	counterDesc  = prometheus.NewDesc("isp_box_events_total", "The box's named counters (isp-box status): SIP malformed, bans, auth failures, drops by reason, ...", []string{"counter"}, nil)
	bansDesc     = prometheus.NewDesc("isp_box_sip_banned_sources", "SIP source addresses banned now.", nil, nil)
	published    = prometheus.NewDesc("isp_box_bus_published_total", "Events published on the internal bus.", nil, nil)
	upDesc       = prometheus.NewDesc("isp_box_start_time_seconds", "When the daemon started, Unix time.", nil, nil)
)

// collector reads the status at each scrape.
type collector struct{ status func() console.Status }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peersDesc, linesDesc, callsDesc, sessionsDesc, answered, lineErrors, counterDesc, bansDesc, published, upDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	peers := map[string]float64{"ok": 0, "unreachable": 0, "unmonitored": 0, "unregistered": 0}
	for _, p := range st.Peers {
		peers[peerStatus(p)]++
	}
	for s, n := range peers {
		ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, n, s)
	}
	lines := map[string]float64{}
	for _, l := range st.Lines {
		lines[l.State]++
		ch <- prometheus.MustNewConstMetric(answered, prometheus.CounterValue, float64(l.Answered), l.Name)
		ch <- prometheus.MustNewConstMetric(lineErrors, prometheus.CounterValue, float64(l.Errors), l.Name)
	}
	for s, n := range lines {
		ch <- prometheus.MustNewConstMetric(linesDesc, prometheus.GaugeValue, n, s)
	}
	calls := map[string]float64{}
	for _, cl := range st.Calls {
		calls[cl.State]++
	}
	for s, n := range calls {
		ch <- prometheus.MustNewConstMetric(callsDesc, prometheus.GaugeValue, n, s)
	}
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(len(st.Sessions)))
	for _, k := range st.Counters {
		ch <- prometheus.MustNewConstMetric(counterDesc, prometheus.CounterValue, float64(k.Value), k.Name)
	}
	ch <- prometheus.MustNewConstMetric(bansDesc, prometheus.GaugeValue, float64(len(st.Bans)))
	ch <- prometheus.MustNewConstMetric(published, prometheus.CounterValue, float64(st.Bus.Published))
	if !st.Started.IsZero() {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, float64(st.Started.UnixNano())/1e9)
	}
}

// peerStatus folds chan_sip's status strings ("OK (7 ms)", "UNREACHABLE",
// "Unmonitored", "UNKNOWN") into a label with few values.
func peerStatus(p console.PeerRow) string {
	s := strings.ToUpper(p.Status)
	switch {
	case p.Host == "" && !strings.HasPrefix(s, "OK"):
		return "unregistered"
	case strings.HasPrefix(s, "OK"):
		return "ok"
	case strings.HasPrefix(s, "UNREACHABLE"), strings.HasPrefix(s, "LAGGED"):
		return "unreachable"
	}
	return "unmonitored"
}

// Handler serves /metrics: the box's status and the Go runtime's.
func Handler(status func() console.Status) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{status}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// NewRegistry is Handler's registry, for tests.
func newRegistry(status func() console.Status) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{status})
	return reg
}
