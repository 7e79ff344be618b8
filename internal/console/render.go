package console

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/status"
)

// The Render functions print Status parts as tables for people, in the
// spirit of Asterisk's `core show channels` and `sip show peers`: one row
// per item, then a summary line. Durations are counted up to now.

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// clockDuration formats d as H:MM:SS (or M:SS under an hour); negative or
// zero-start durations print as "-".
func clockDuration(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	s := int64(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return clockDuration(now.Sub(t))
}

// sizeIEC formats a byte count: 512 B, 1.5 KiB, 12.0 MiB.
func sizeIEC(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// addrOrDash is an address, or "-" when there is none.
func addrOrDash(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// RenderCalls prints live calls, like `core show channels`.
func RenderCalls(w io.Writer, rows []status.Call) error {
	return renderCalls(terminal(w), rows, time.Now())
}

func renderCalls(w io.Writer, rows []status.Call, now time.Time) error {
	t := newTable(w)
	fmt.Fprintln(t, "ID\tFROM\tEXTEN\tTO\tSTATE\tDURATION\tTALK\tMEDIA\tCODEC\tPACKETS\tLOST\tJITTER")
	for _, r := range rows {
		pkts, lost, jitter := "-", "-", "-"
		if r.MediaMode == "relay" {
			pkts, lost = strconv.FormatUint(r.Packets, 10), strconv.FormatUint(r.Lost, 10)
			jitter = strconv.FormatFloat(r.JitterMS, 'f', 1, 64) + " ms"
		}
		if m := r.Modem; m != nil {
			lost, jitter = strconv.FormatUint(m.RTPLost, 10), strconv.FormatFloat(m.RTPJitter, 'f', 1, 64)+" ms"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.ID, dash(r.From), dash(r.Exten), dash(r.To), dash(string(r.State)), since(r.Start, now), since(r.Answer, now),
			dash(r.MediaMode), dash(r.Codec), pkts, lost, jitter)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, plural(len(rows), "active call", "active calls")); err != nil {
		return err
	}
	return renderModems(w, rows, func(r status.Call) (string, *bus.ModemStats) { return r.ID, r.Modem })
}

// renderModems prints, under a table, the software modem's figures of
// the rows that have them.
func renderModems[R any](w io.Writer, rows []R, of func(R) (string, *bus.ModemStats)) error {
	for _, r := range rows {
		name, m := of(r)
		if m == nil {
			continue
		}
		if _, err := fmt.Fprintf(w, "%s: %s %d bit/s %s, SNR %.1f dB, EQ MSE %.4f, %d retrains, RTP lost %d late %d jitter %.1f ms, %s in, %s out\n",
			name, m.Modulation, m.Rate, m.State, m.SNR, m.EQMSE, m.Retrains, m.RTPLost, m.RTPLate, m.RTPJitter,
			sizeIEC(uint64(max(m.BytesIn, 0))), sizeIEC(uint64(max(m.BytesOut, 0)))); err != nil {
			return err
		}
	}
	return nil
}

// RenderLines prints the modem lines, in config order, and under the
// table the last error of each line that has one.
func RenderLines(w io.Writer, rows []status.Line) error {
	return renderLines(terminal(w), rows, time.Now())
}

func renderLines(w io.Writer, rows []status.Line, now time.Time) error {
	t := newTable(w)
	// CALLER and USER (who calls, who logged in) only when some line has
	// them: an idle box keeps its old table. The speed and protocol are in
	// LAST CONNECT, as the modem said them.
	who := false
	for _, r := range rows {
		who = who || r.CallerID != "" || r.User != ""
	}
	head := "LINE\tDEVICE\tPEER\tSTATE\tFOR\tCALL\tSESSION"
	if who {
		head += "\tCALLER\tUSER"
	}
	fmt.Fprintln(t, head+"\tANSWERED\tERRORS\tLAST CONNECT")
	for _, r := range rows {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s",
			r.Name, dash(r.Device), dash(r.Peer), dash(r.State), since(r.Since, now), dash(r.CallID), dash(r.Session))
		if who {
			fmt.Fprintf(t, "\t%s\t%s", dash(r.CallerID), dash(r.User))
		}
		fmt.Fprintf(t, "\t%d\t%d\t%s\n", r.Answered, r.Errors, dash(r.LastConnect))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	// Up means the modem answers calls: a line still opening its port
	// (missing, no permission, locked by another program) or resetting a
	// silent modem is not up, and is counted by its state.
	up := 0
	var notUp []string
	count := map[string]int{}
	for _, r := range rows {
		switch r.State {
		case "idle", "ringing", "answering", "connected", "hangingup":
			up++
		default:
			st := r.State
			if st == "" {
				st = "unknown"
			}
			if count[st] == 0 {
				notUp = append(notUp, st)
			}
			count[st]++
		}
	}
	fmt.Fprintf(w, "%s, %d up", plural(len(rows), "line", "lines"), up)
	for _, st := range notUp {
		fmt.Fprintf(w, ", %d %s", count[st], st)
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		if r.Caps != "" {
			fmt.Fprintf(w, "%s: port: %s\n", r.Name, r.Caps)
		}
		if r.LastError != "" {
			fmt.Fprintf(w, "%s: last error: %s\n", r.Name, r.LastError)
		}
		if r.Pending != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Name, r.Pending)
		}
	}
	return renderModems(w, rows, func(r status.Line) (string, *bus.ModemStats) { return r.Name, r.Modem })
}

// RenderSessions prints the live PPP sessions.
func RenderSessions(w io.Writer, rows []Session) error {
	return renderSessions(terminal(w), rows, time.Now())
}

func renderSessions(w io.Writer, rows []Session, now time.Time) error {
	t := newTable(w)
	// AAA and ACCT (who authenticated, RADIUS accounting state) only when
	// some session has them: a box without RADIUS keeps its old table.
	// The same for FCS ERR and DROPPED (a noisy line, a client sending
	// what the network refuses): shown when some session has them.
	// CALLER (a TCP client's address, the SIP caller) likewise.
	aaa, errs, caller := false, false, false
	for _, r := range rows {
		aaa = aaa || r.AAA != "" || r.Acct != ""
		errs = errs || r.FCSErrs != 0 || r.Dropped != 0
		caller = caller || r.CallerID != ""
	}
	head := "SESSION\tLINE\tUSER\tPHASE\tLOCAL\tREMOTE\tAUTH\tUPTIME\tIN\tOUT\tPKTS IN/OUT\tVJ"
	if caller {
		head += "\tCALLER"
	}
	if aaa {
		head += "\tAAA\tACCT"
	}
	if errs {
		head += "\tFCS ERR\tDROPPED"
	}
	fmt.Fprintln(t, head)
	for _, r := range rows {
		vj := "no"
		if r.VJ {
			vj = "yes"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s",
			r.ID, dash(r.Line), dash(r.User), dash(r.Phase), addrOrDash(r.Local), addrOrDash(r.Remote), dash(r.Auth),
			since(r.Start, now), sizeIEC(r.BytesIn), sizeIEC(r.BytesOut), r.PktsIn, r.PktsOut, vj)
		if caller {
			fmt.Fprintf(t, "\t%s", dash(r.CallerID))
		}
		if aaa {
			fmt.Fprintf(t, "\t%s\t%s", dash(r.AAA), dash(r.Acct))
		}
		if errs {
			fmt.Fprintf(t, "\t%d\t%d", r.FCSErrs, r.Dropped)
		}
		fmt.Fprintln(t)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, plural(len(rows), "active session", "active sessions")); err != nil {
		return err
	}
	return renderModems(w, rows, func(r Session) (string, *bus.ModemStats) { return r.ID, r.Modem })
}

func sortSubs(subs []bus.SubStats) {
	slices.SortFunc(subs, func(a, b bus.SubStats) int { return cmp.Compare(a.Name, b.Name) })
}

// RenderBus prints the event bus's health: per subscriber what it got,
// what it lost (lossy) and how deep its queue is (reliable).
func RenderBus(w io.Writer, st BusStats) error {
	w = terminal(w)
	subs := slices.Clone(st.Subscribers)
	sortSubs(subs)
	fmt.Fprintf(w, "Events published: %d\n", st.Published)
	t := newTable(w)
	fmt.Fprintln(t, "SUBSCRIBER\tKIND\tDELIVERED\tDROPPED\tQUEUED\tHIGH WATER")
	for _, s := range subs {
		kind, hw := "lossy", "-"
		if s.Reliable {
			kind, hw = "reliable", strconv.Itoa(s.HighWater)
		}
		fmt.Fprintf(t, "%s\t%s\t%d\t%d\t%d\t%s\n", s.Name, kind, s.Delivered, s.Dropped, s.Queued, hw)
	}
	return t.Flush()
}

// RenderCounters prints named counters, sorted by name, zero ones left out.
func RenderCounters(w io.Writer, cs []Counter) error {
	w = terminal(w)
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b Counter) int { return cmp.Compare(a.Name, b.Name) })
	t := newTable(w)
	for _, c := range cs {
		if c.Value != 0 {
			fmt.Fprintf(t, "%s\t%d\n", c.Name, c.Value)
		}
	}
	return t.Flush()
}

// Verbosity prefixes of `asterisk -rvvv`: "  == " for state changes,
// "    -- " for the progress of calls and sessions; "  !! " marks trouble.
const (
	prefixState    = "  == "
	prefixProgress = "    -- "
	prefixTrouble  = "  !! "
)

func eventPrefix(kind string) string {
	switch kind {
	case "sip.authfailed", "sip.banned", "modem.error", "net.dropped":
		return prefixTrouble
	case "sip.registered", "sip.unregistered", "sip.peerstatus", "line.state", "ppp.phase", "box.notice":
		return prefixState
	}
	return prefixProgress
}

// RenderEvent prints one line of the live stream:
//
//	[15:04:05.000] call.started       -- Executing [88567682@default:1] Dial(...)
//
// time, kind, and the event's own text behind an Asterisk-style prefix. A
// line that reports dropped events says so on a "!!" line.
func RenderEvent(w io.Writer, l EventLine) error {
	w = terminal(w)
	ts := l.Time.Format("15:04:05.000") // the daemon's clock and zone, as sent
	var err error
	if l.Dropped > 0 {
		_, err = fmt.Fprintf(w, "[%s] %-16s%s%s lost: this console read too slowly\n", ts, "console", prefixTrouble,
			plural(int(l.Dropped), "event", "events"))
		return err
	}
	text := strings.ReplaceAll(l.Text, "\n", " ")
	_, err = fmt.Fprintf(w, "[%s] %-16s%s%s\n", ts, l.Kind, eventPrefix(l.Kind), text)
	return err
}

// recordTime formats the time of a record: date and time in the record's
// own zone (the daemon's), "-" when unset.
func recordTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("2006-01-02 15:04:05")
}

// RenderCallRecords prints call records (the store's CDRs), as given
// (newest first from the daemon). TALK is the billable time, from answer
// to end, like Asterisk's billsec.
func RenderCallRecords(w io.Writer, recs []bus.CallEnded) error {
	w = terminal(w)
	t := newTable(w)
	fmt.Fprintln(t, "START\tCALL\tFROM\tEXTEN\tCALLEE\tSTATUS\tSIP\tDURATION\tTALK\tHANGUP BY\tMEDIA")
	for _, r := range recs {
		dur, talk := "-", "-"
		if !r.Start.IsZero() && !r.End.IsZero() {
			dur = clockDuration(r.End.Sub(r.Start))
		}
		if !r.Answer.IsZero() && !r.End.IsZero() {
			talk = clockDuration(r.End.Sub(r.Answer))
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n",
			recordTime(r.Start), r.CallID, dash(r.From), dash(r.To), dash(r.Callee), dash(r.Status), r.SIPCode,
			dur, talk, dash(r.HangupBy), dash(strings.TrimSpace(r.MediaMode+" "+r.Codec)))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, plural(len(recs), "call record", "call records"))
	return err
}

// RenderSessionRecords prints PPP session records (the accounting the
// store keeps), as given.
func RenderSessionRecords(w io.Writer, recs []bus.PPPDown) error {
	w = terminal(w)
	t := newTable(w)
	fmt.Fprintln(t, "START\tSESSION\tLINE\tUSER\tREMOTE\tDURATION\tIN\tOUT\tPKTS IN/OUT\tCAUSE\tCALL\tCALLER")
	for _, r := range recs {
		dur := "-"
		if !r.Start.IsZero() && !r.End.IsZero() {
			dur = clockDuration(r.End.Sub(r.Start))
		}
		remote := "-"
		if r.Remote.IsValid() {
			remote = r.Remote.String()
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n",
			recordTime(r.Start), r.Session, dash(r.Line), dash(r.User), remote, dur,
			sizeIEC(r.BytesIn), sizeIEC(r.BytesOut), r.PktsIn, r.PktsOut, dash(r.Cause), dash(r.CallID), dash(r.CallerID))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, plural(len(recs), "session record", "session records"))
	return err
}
