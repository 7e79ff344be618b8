package pbx

import (
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RFC 4028 session timers, per dialog: the B2BUA keeps one on each leg.
// A dialog without one (the peer does not support timers, or
// session-timers=refuse) is probed with in-dialog OPTIONS at the same
// pace instead, so that a call whose parties vanished without BYE (direct
// media: the box sees no RTP) still ends.

// Session timer modes (chan_sip's session-timers).
const (
	timersAccept    = "accept"    // use timers when the caller asks for them
	timersOriginate = "originate" // also ask for them on calls we place
	timersRefuse    = "refuse"    // never negotiate them (probes only)
)

// Defaults of chan_sip (DEFAULT_MAX_SE, DEFAULT_MIN_SE in sip.h) and the
// floor of RFC 4028 §4 (Min-SE is never below 90 s).
const (
	defaultSessionExpires = 1800 * time.Second
	defaultSessionMinSE   = 90 * time.Second
	rfcMinSE              = 90 * time.Second
)

// timerPolicy is a peer's session timer configuration with defaults.
type timerPolicy struct {
	mode      string
	expires   time.Duration
	minSE     time.Duration
	refresher string // uas or uac: who refreshes when we answer and may choose
}

func policyOf(p Peer) timerPolicy {
	tp := timerPolicy{mode: strings.ToLower(p.SessionTimers), expires: p.SessionExpires, minSE: p.SessionMinSE,
		refresher: strings.ToLower(p.SessionRefresher)}
	if tp.mode == "" {
		tp.mode = timersAccept
	}
	if tp.expires <= 0 {
		tp.expires = defaultSessionExpires
	}
	if tp.minSE <= 0 {
		tp.minSE = defaultSessionMinSE
	}
	if tp.minSE > tp.expires {
		tp.minSE = tp.expires
	}
	if tp.refresher != "uac" {
		tp.refresher = "uas"
	}
	return tp
}

// sessionTimer is one dialog's supervision: an RFC 4028 session timer,
// or the OPTIONS probe schedule when there is none. Guarded by call.mu.
type sessionTimer struct {
	interval   time.Duration // the session interval (Session-Expires), or the probe period x 2
	negotiated bool          // RFC 4028 in force on this dialog
	boxRefresh bool          // we refresh (or probe); else the peer must refresh
	supported  bool          // the peer said Supported: timer
	update     bool          // the peer allows UPDATE: refresh without SDP (RFC 4028 §7.4)
	last       time.Time     // last refresh or probe that proved the peer alive
	nextTry    time.Time     // no refresh before this (after a 491)
}

// due says whether the box must refresh or probe now (half the interval,
// RFC 4028 §10).
func (st *sessionTimer) due(now time.Time) bool {
	return st.boxRefresh && st.interval > 0 && !now.Before(st.last.Add(st.interval/2)) && !now.Before(st.nextTry)
}

// expired says whether a peer that is the refresher missed its refresh:
// RFC 4028 §10 gives it until the interval minus min(32 s, interval/3).
func (st *sessionTimer) expired(now time.Time) bool {
	if !st.negotiated || st.boxRefresh || st.interval <= 0 {
		return false
	}
	return now.After(st.last.Add(st.interval - min(32*time.Second, st.interval/3)))
}

// probeTimeout is how long a refresh or probe may go unanswered: the
// non-INVITE transaction timeout (64*T1, RFC 3261 §17.1.2.2), or less
// when the interval is shorter, so that no answer ends the call before
// the next attempt is due.
func (st *sessionTimer) probeTimeout() time.Duration {
	return min(64*sip.T1, max(st.interval/2, time.Second))
}

// headers is what requests and responses share for reading headers.
type headers interface {
	GetHeader(name string) sip.Header
	GetHeaders(name string) []sip.Header
}

// sessionExpires parses Session-Expires (compact form x) of m:
// delta-seconds and the refresher parameter (RFC 4028 §4).
func sessionExpires(m headers) (time.Duration, string, bool) {
	h := m.GetHeader("Session-Expires")
	if h == nil {
		h = m.GetHeader("x")
	}
	if h == nil {
		return 0, "", false
	}
	parts := strings.Split(h.Value(), ";")
	n, err := strconv.Atoi(strings.TrimSpace(parts[0]))
	if err != nil || n <= 0 {
		return 0, "", false
	}
	ref := ""
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			ref = strings.ToLower(strings.TrimSpace(v))
		}
	}
	return time.Duration(n) * time.Second, ref, true
}

// minSEOf parses Min-SE (RFC 4028 §5); 0 when absent or malformed.
func minSEOf(m headers) time.Duration {
	h := m.GetHeader("Min-SE")
	if h == nil {
		return 0
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// hasOptionTag reports whether header name (Supported, Require, Allow...)
// of m lists tag, case-insensitively, over all its instances.
func hasOptionTag(m headers, tag string, names ...string) bool {
	for _, name := range names {
		for _, h := range m.GetHeaders(name) {
			for _, t := range strings.Split(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(t), tag) {
					return true
				}
			}
		}
	}
	return false
}

func supportsTimer(m headers) bool { return hasOptionTag(m, "timer", "Supported", "k") }
func allowsUpdate(m headers) bool  { return hasOptionTag(m, "UPDATE", "Allow") }

func secs(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }

// seHeaders are the headers that state a session timer in a request or a
// 2xx: Session-Expires with the refresher, and Require: timer when the
// other side supports it (RFC 4028 §7.1, §9).
func seHeaders(interval time.Duration, refresher string, require bool) []sip.Header {
	hs := []sip.Header{sip.NewHeader("Session-Expires", secs(interval)+";refresher="+refresher)}
	if require {
		hs = append(hs, sip.NewHeader("Require", "timer"))
	}
	return hs
}

// callerTimer negotiates the session timer of the caller's dialog from
// its INVITE (RFC 4028 §9, the box as UAS). It returns the timer and the
// headers for our 2xx, or a Min-SE value > 0 when the INVITE must be
// refused with 422.
func callerTimer(req *sip.Request, tp timerPolicy) (sessionTimer, []sip.Header, time.Duration) {
	st := sessionTimer{interval: tp.expires, boxRefresh: true, supported: supportsTimer(req), update: allowsUpdate(req)}
	se, ref, ok := sessionExpires(req)
	if tp.mode == timersRefuse || (!ok && !(tp.mode == timersOriginate && st.supported)) {
		return st, nil, 0 // probes only
	}
	// the config keeps minSE >= 90 s (RFC 4028 §4); tests go below
	floor := max(tp.minSE, minSEOf(req))
	if ok && se < tp.minSE {
		return st, nil, floor
	}
	if !ok {
		se = tp.expires
	}
	if se > tp.expires {
		se = max(tp.expires, floor) // RFC 4028 §9: we may lower it, not below Min-SE
	}
	switch {
	case !st.supported:
		ref = "uas" // a caller without timer support cannot refresh
	case ref != "uac" && ref != "uas":
		ref = tp.refresher
	}
	st.interval, st.negotiated, st.boxRefresh = se, true, ref == "uas"
	return st, seHeaders(se, ref, st.supported), 0
}

// calleeTimer reads the timer the callee chose in its 2xx to our INVITE
// (RFC 4028 §7.2, the box as UAC); without Session-Expires the dialog is
// probed instead.
func calleeTimer(res *sip.Response, tp timerPolicy) sessionTimer {
	st := sessionTimer{interval: tp.expires, boxRefresh: true, supported: supportsTimer(res), update: allowsUpdate(res)}
	se, ref, ok := sessionExpires(res)
	if !ok || tp.mode == timersRefuse {
		return st
	}
	st.interval, st.negotiated, st.boxRefresh = se, true, ref != "uas"
	return st
}
