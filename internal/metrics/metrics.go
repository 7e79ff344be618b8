// Package metrics exposes the box to Prometheus. Gauges and the
// components' own counters are read from the same console.Status the CLI
// renders, at each scrape, so /metrics and `isp-box status` cannot
// disagree; what the status does not keep (calls by outcome, ended PPP
// sessions' bytes, bans and authentication failures by reason) is counted
// here from the bus, on a subscription that never drops. Names follow
// Prometheus' conventions (prometheus.io/docs/practices/naming): the
// isp_box_ prefix, _total for counters, base units (bytes, seconds), and
// node_exporter's receive/transmit for the two directions of a link.
package metrics

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/status"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Every metric the box exposes besides the Go runtime's and the process's.
// README's "Status page and /metrics" lists them (TestREADME checks).
var (
	buildInfo = desc("isp_box_build_info", "Always 1; the labels say which isp-box runs.", "version")
	startTime = desc("isp_box_start_time_seconds", "When the daemon started, Unix time.")

	peers      = desc("isp_box_sip_peers", "SIP peers by status: ok (qualify answered in time), unreachable (or lagged), unmonitored (registered, qualify off), unregistered.", "status")
	calls      = desc("isp_box_sip_calls", "Live SIP calls by state (routing, ringing, up, ending).", "state")
	callsEnded = desc("isp_box_sip_calls_ended_total", "Ended SIP calls by outcome, from Asterisk's DIALSTATUS: answered, busy, no_answer, cancelled, congestion, unavailable, other.", "outcome")
	authFail   = desc("isp_box_sip_auth_failures_total", "SIP requests refused authentication, by reason: wrong_password, no_such_peer, username_mismatch, acl, other.", "reason")
	bansTotal  = desc("isp_box_sip_bans_total", "SIP source addresses banned after repeated authentication failures.")
	banned     = desc("isp_box_sip_banned_sources", "SIP source addresses banned now.")
	sipDropped = desc("isp_box_sip_dropped_messages_total", "SIP datagrams dropped unanswered at the request entry, by reason: malformed, banned, rate_limited, queue_full, amplification (the answer would have been larger than the request), guess_limit (per-name password guess limit).", "reason")
	sipShed    = desc("isp_box_sip_calls_shed_total", "INVITEs answered 503 because the box was full.")
	sipStless  = desc("isp_box_sip_stateless_responses_total", "Responses the request entry sent without a transaction (to unknown or failed requests).")
	registries = desc("isp_box_sip_registrations", "Outbound registrations (register =>) by state.", "state")

	lines        = desc("isp_box_modem_lines", "Modem lines by state.", "state")
	lineAnswered = desc("isp_box_modem_calls_answered_total", "Calls a line answered (CONNECT), by line.", "line")
	lineErrors   = desc("isp_box_modem_line_errors_total", "Errors a line reported, by line.", "line")

	sessions      = desc("isp_box_ppp_sessions", "Live PPP sessions.")
	sessStarted   = desc("isp_box_ppp_sessions_started_total", "PPP sessions that came up (IPCP opened).")
	sessEnded     = desc("isp_box_ppp_sessions_ended_total", "Ended PPP sessions by cause (carrier lost, peer terminated, authentication failed, idle, ...).", "cause")
	sessRxBytes   = desc("isp_box_ppp_session_receive_bytes_total", "Bytes received from the client in a live PPP session.", "session", "line", "user")
	sessTxBytes   = desc("isp_box_ppp_session_transmit_bytes_total", "Bytes sent to the client in a live PPP session.", "session", "line", "user")
	sessRxPackets = desc("isp_box_ppp_session_receive_packets_total", "Packets received from the client in a live PPP session.", "session", "line", "user")
	sessTxPackets = desc("isp_box_ppp_session_transmit_packets_total", "Packets sent to the client in a live PPP session.", "session", "line", "user")
	sessDropped   = desc("isp_box_ppp_session_dropped_packets_total", "Packets PPP dropped in a live session (a frame over the MRU, no network attached yet, a full queue to the client).", "session", "line", "user")
	sessFCSErrors = desc("isp_box_ppp_session_fcs_errors_total", "Frames with a bad FCS (line noise) in a live PPP session.", "session", "line", "user")
	rxBytes       = desc("isp_box_ppp_receive_bytes_total", "Bytes received from clients, every PPP session since the start.")
	txBytes       = desc("isp_box_ppp_transmit_bytes_total", "Bytes sent to clients, every PPP session since the start.")
	rxPackets     = desc("isp_box_ppp_receive_packets_total", "Packets received from clients, every PPP session since the start.")
	txPackets     = desc("isp_box_ppp_transmit_packets_total", "Packets sent to clients, every PPP session since the start.")
	pppDropped    = desc("isp_box_ppp_dropped_packets_total", "Packets PPP dropped, every PPP session since the start.")
	pppFCSErrors  = desc("isp_box_ppp_fcs_errors_total", "Frames with a bad FCS (line noise), every PPP session since the start.")

	netFlows   = desc("isp_box_net_flows", "Forwarded TCP connections and UDP flows open now (userspace network).")
	netDropped = desc("isp_box_net_dropped_packets_total", "Packets the network dropped, by reason (spoofed, isolated, malformed, no_route, forbidden, ping_denied, ttl_expired, flow_limit).", "reason")

	busPublished = desc("isp_box_bus_published_events_total", "Events published on the internal bus.")
	busQueued    = desc("isp_box_bus_queued_events", "Events waiting for a bus subscriber, by subscriber.", "subscriber")
	busHighWater = desc("isp_box_bus_queue_high_water_events", "The most events ever queued for a reliable bus subscriber, by subscriber.", "subscriber")
	busDelivered = desc("isp_box_bus_delivered_events_total", "Events handed to a live bus subscriber, by subscriber.", "subscriber")
	busLost      = desc("isp_box_bus_lost_events_total", "Events lossy bus subscribers dropped since the start, subscribers gone since included.")
	busDropped   = desc("isp_box_bus_dropped_events_total", "Events a live lossy bus subscriber lost because its queue was full, by subscriber.", "subscriber")

	otherCounters = desc("isp_box_events_total", "The box's named counters (isp-box status) that have no metric of their own.", "counter")
)

var allDescs = []*prometheus.Desc{
	buildInfo, startTime,
	peers, calls, callsEnded, authFail, bansTotal, banned, sipDropped, sipShed, sipStless, registries,
	lines, lineAnswered, lineErrors,
	sessions, sessStarted, sessEnded, sessRxBytes, sessTxBytes, sessRxPackets, sessTxPackets, sessDropped, sessFCSErrors,
	rxBytes, txBytes, rxPackets, txPackets, pppDropped, pppFCSErrors,
	netFlows, netDropped,
	busPublished, busQueued, busHighWater, busDelivered, busDropped, busLost,
	otherCounters,
}

// The named counters of console.Status that get a metric of their own:
// the metric and its label value.
var namedCounters = map[string]struct {
	desc  *prometheus.Desc
	label string
}{
	"sip.malformed":           {sipDropped, "malformed"},
	"sip.banned_drops":        {sipDropped, "banned"},
	"sip.rate_limited":        {sipDropped, "rate_limited"},
	"sip.queue_full":          {sipDropped, "queue_full"},
	"sip.not_answered_larger": {sipDropped, "amplification"},
	"sip.guesses_throttled":   {sipDropped, "guess_limit"},
	"sip.calls_shed":          {sipShed, ""},
	"sip.stateless_answers":   {sipStless, ""},
	// Counted from the bus by reason instead.
	"sip.auth_failures": {nil, ""},
}

// Label values that are exported as 0 before anything happened, so that
// rate() and absent() see the series from the first scrape.
var (
	peerStatuses = []string{"ok", "unreachable", "unmonitored", "unregistered"}
	outcomes     = []string{"answered", "busy", "no_answer", "cancelled", "congestion", "unavailable", "other"}
	authReasons  = []string{"wrong_password", "no_such_peer", "username_mismatch", "acl", "other"}
	lineStates   = []bus.LineStatus{bus.LineOpening, bus.LineResetting, bus.LineInitialising, bus.LineIdle,
		bus.LineRinging, bus.LineAnswering, bus.LineConnected, bus.LineHangingup, bus.LineDown}
)

// Metrics is the box's /metrics. New subscribes to the bus at once, so no
// event published after New is missed; Run counts them.
type Metrics struct {
	status func() console.Status
	bus    *bus.Bus
	sub    *bus.Sub
	reg    *prometheus.Registry

	mu         sync.Mutex
	callsEnded map[string]uint64 // outcome
	authFail   map[string]uint64 // reason
	bans       uint64
	started    uint64
	ended      map[string]uint64 // cause
	closed     traffic           // sessions whose PPPDown was counted
	live       map[string]traffic
	gone       map[string]bool // PPPDown counted, the session may still be listed
	handler    http.Handler
}

// traffic is one session's counters, in and out as PPP counts them, and
// what it dropped.
type traffic struct{ bytesIn, bytesOut, pktsIn, pktsOut, dropped, fcsErrs uint64 }

func (t *traffic) add(u traffic) {
	t.bytesIn += u.bytesIn
	t.bytesOut += u.bytesOut
	t.pktsIn += u.pktsIn
	t.pktsOut += u.pktsOut
	t.dropped += u.dropped
	t.fcsErrs += u.fcsErrs
}

// max keeps a live session's counters from going backwards between two
// reads that race with its end.
func (t traffic) max(u traffic) traffic {
	return traffic{max(t.bytesIn, u.bytesIn), max(t.bytesOut, u.bytesOut), max(t.pktsIn, u.pktsIn), max(t.pktsOut, u.pktsOut),
		max(t.dropped, u.dropped), max(t.fcsErrs, u.fcsErrs)}
}

// New returns the metrics of a box: status is read at each scrape, b's
// events are counted once Run runs. b may be nil (nothing is counted).
func New(status func() console.Status, b *bus.Bus) *Metrics {
	m := &Metrics{
		status:     status,
		bus:        b,
		callsEnded: map[string]uint64{},
		authFail:   map[string]uint64{},
		ended:      map[string]uint64{},
		live:       map[string]traffic{},
		gone:       map[string]bool{},
	}
	if b != nil {
		m.sub = b.SubscribeReliable("metrics", func(ev bus.Event) bool {
			switch ev.(type) {
			case bus.CallEnded, bus.AuthFailed, bus.SourceBanned, bus.PPPUp, bus.PPPDown:
				return true
			}
			return false
		})
	}
	m.reg = prometheus.NewRegistry()
	m.reg.MustRegister(collector{m}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// Run counts the bus's events until ctx is done, then unsubscribes.
func (m *Metrics) Run(ctx context.Context) error {
	if m.sub == nil {
		<-ctx.Done()
		return nil
	}
	defer m.sub.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case env, ok := <-m.sub.C():
			if !ok {
				return nil
			}
			m.count(env.Event)
		}
	}
}

func (m *Metrics) count(ev bus.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e := ev.(type) {
	case bus.CallEnded:
		m.callsEnded[Outcome(e.Status)]++
	case bus.AuthFailed:
		m.authFail[authReason(e.Reason)]++
	case bus.SourceBanned:
		m.bans++
	case bus.PPPUp:
		m.started++
	case bus.PPPDown:
		cause := e.Cause
		if cause == "" {
			cause = "unknown"
		}
		m.ended[cause]++
		// The record's counters are final; they replace what the last
		// scrape saw of the session (never less: they only grow).
		final := traffic{e.BytesIn, e.BytesOut, e.PktsIn, e.PktsOut, e.Dropped, e.FCSErrors}.max(m.live[e.Session])
		m.closed.add(final)
		delete(m.live, e.Session)
		m.gone[e.Session] = true
	}
}

// Outcome is the outcome label of a call that ended with Asterisk's
// DIALSTATUS s.
func Outcome(s string) string {
	switch s {
	case "ANSWER":
		return "answered"
	case "BUSY":
		return "busy"
	case "NOANSWER":
		return "no_answer"
	case "CANCEL":
		return "cancelled"
	case "CONGESTION":
		return "congestion"
	case "CHANUNAVAIL":
		return "unavailable"
	}
	return "other"
}

// authReason folds pbx's AuthFailed reasons into few label values.
func authReason(r string) string {
	switch {
	case r == "wrong password":
		return "wrong_password"
	case r == "no such peer":
		return "no_such_peer"
	case r == "username mismatch":
		return "username_mismatch"
	case strings.HasPrefix(r, "ACL"):
		return "acl"
	}
	return "other"
}

// ServeHTTP serves the Prometheus text format: the box's metrics and the
// Go runtime's.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.handler.ServeHTTP(w, r)
}

// Registry is the registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// collector reads the status at each scrape.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.status()
	gauge(ch, buildInfo, 1, st.Version)
	if !st.Started.IsZero() {
		gauge(ch, startTime, float64(st.Started.UnixNano())/1e9)
	}

	byStatus := map[string]float64{}
	for _, s := range peerStatuses {
		byStatus[s] = 0
	}
	for _, p := range st.Peers {
		byStatus[peerStatus(p)]++
	}
	emitGauges(ch, peers, byStatus)

	byState := map[string]float64{}
	for _, cl := range st.Calls {
		byState[string(cl.State)]++
	}
	emitGauges(ch, calls, byState)

	byState = map[string]float64{}
	for _, r := range st.Registry {
		byState[r.State]++
	}
	emitGauges(ch, registries, byState)

	byState = map[string]float64{}
	for _, s := range lineStates {
		byState[string(s)] = 0
	}
	for _, l := range st.Lines {
		byState[l.State]++
		counter(ch, lineAnswered, uint64(l.Answered), l.Name)
		counter(ch, lineErrors, uint64(l.Errors), l.Name)
	}
	emitGauges(ch, lines, byState)

	gauge(ch, banned, float64(len(st.Bans)))
	for _, k := range st.Counters {
		if r, ok := strings.CutPrefix(k.Name, "net.dropped."); ok {
			counter(ch, netDropped, k.Value, r)
			continue
		}
		nc, ok := namedCounters[k.Name]
		switch {
		case !ok:
			counter(ch, otherCounters, k.Value, k.Name)
		case nc.desc == nil:
		case nc.label == "":
			counter(ch, nc.desc, k.Value)
		default:
			counter(ch, nc.desc, k.Value, nc.label)
		}
	}

	gauge(ch, sessions, float64(len(st.Sessions)))
	gauge(ch, netFlows, float64(st.Net.Flows))
	c.collectCounted(ch, st.Sessions)

	counter(ch, busPublished, st.Bus.Published)
	if c.m.bus != nil {
		counter(ch, busLost, c.m.bus.Lost())
	}
	// Several subscriptions can share a name (two open status pages):
	// one series per name, summed (the high-water mark: the largest).
	type subAgg struct {
		queued, high    int
		delivered, drop uint64
	}
	subs := map[string]*subAgg{}
	for _, s := range st.Bus.Subscribers {
		a := subs[s.Name]
		if a == nil {
			a = &subAgg{}
			subs[s.Name] = a
		}
		a.queued += s.Queued
		a.high = max(a.high, s.HighWater)
		a.delivered += s.Delivered
		a.drop += s.Dropped
	}
	for name, a := range subs {
		gauge(ch, busQueued, float64(a.queued), name)
		gauge(ch, busHighWater, float64(a.high), name)
		counter(ch, busDelivered, a.delivered, name)
		counter(ch, busDropped, a.drop, name)
	}
}

// collectCounted emits what is counted from the bus, and the PPP traffic:
// each live session's counters and the totals, which are the ended
// sessions' final counters plus the live ones'.
func (c collector) collectCounted(ch chan<- prometheus.Metric, live []console.Session) {
	m := c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	listed := map[string]bool{}
	for _, s := range live {
		listed[s.ID] = true
		if m.gone[s.ID] {
			continue // ended and counted; the registry lists it a moment longer
		}
		t := traffic{s.BytesIn, s.BytesOut, s.PktsIn, s.PktsOut, s.Dropped, s.FCSErrs}.max(m.live[s.ID])
		m.live[s.ID] = t
		l := []string{s.ID, s.Line, s.User}
		counter(ch, sessRxBytes, t.bytesIn, l...)
		counter(ch, sessTxBytes, t.bytesOut, l...)
		counter(ch, sessRxPackets, t.pktsIn, l...)
		counter(ch, sessTxPackets, t.pktsOut, l...)
		counter(ch, sessDropped, t.dropped, l...)
		counter(ch, sessFCSErrors, t.fcsErrs, l...)
	}
	for id := range m.gone {
		if !listed[id] {
			delete(m.gone, id)
		}
	}
	// A session no longer listed whose PPPDown is not counted yet keeps
	// its last counters in m.live until it is, so the totals never dip.
	total := m.closed
	for _, t := range m.live {
		total.add(t)
	}
	counter(ch, rxBytes, total.bytesIn)
	counter(ch, txBytes, total.bytesOut)
	counter(ch, rxPackets, total.pktsIn)
	counter(ch, txPackets, total.pktsOut)
	counter(ch, pppDropped, total.dropped)
	counter(ch, pppFCSErrors, total.fcsErrs)

	counter(ch, sessStarted, m.started)
	for cause, n := range m.ended {
		counter(ch, sessEnded, n, cause)
	}
	for _, o := range outcomes {
		counter(ch, callsEnded, m.callsEnded[o], o)
	}
	for _, r := range authReasons {
		counter(ch, authFail, m.authFail[r], r)
	}
	counter(ch, bansTotal, m.bans)
}

func emitGauges(ch chan<- prometheus.Metric, d *prometheus.Desc, byLabel map[string]float64) {
	keys := make([]string, 0, len(byLabel))
	for k := range byLabel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		gauge(ch, d, byLabel[k], k)
	}
}

// peerStatus folds chan_sip's status strings ("OK (7 ms)", "UNREACHABLE",
// "Unmonitored", "UNKNOWN") into a label with few values.
func peerStatus(p status.Peer) string {
	s := strings.ToUpper(p.Status)
	switch {
	case !p.Host.IsValid() && !strings.HasPrefix(s, "OK"):
		return "unregistered"
	case strings.HasPrefix(s, "OK"):
		return "ok"
	case strings.HasPrefix(s, "UNREACHABLE"), strings.HasPrefix(s, "LAGGED"):
		return "unreachable"
	}
	return "unmonitored"
}
