package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/console"
)

// requestTimeout bounds one status request to the daemon.
const requestTimeout = 15 * time.Second

// clientFlags are the flags of every command that talks to the daemon.
type clientFlags struct {
	socket string // -s: control socket
	json   bool   // --json: print the JSON document instead of a table
}

func (cf *clientFlags) register(fs *flagSet, withJSON bool) {
	fs.StringVar(&cf.socket, "s", "", "control socket of the daemon (default "+console.DefaultSocketPath()+", else "+console.ServiceSocketPath+" when that is there)")
	if withJSON {
		fs.BoolVar(&cf.json, "json", false, "print JSON instead of a table (format may change)")
	}
}

func (cf *clientFlags) client() *console.Client { return console.NewClient(cf.socket) }

// daemonError prints err in one line and returns exit status 1. A missing
// daemon reads "isp-box: no daemon at PATH: ... (is "isp-box serve" running?)".
func daemonError(e *env, err error) int {
	var nd *console.NoDaemonError
	if errors.As(err, &nd) {
		e.errorf("%s", nd)
		return 1
	}
	e.errorf("%v", err)
	return 1
}

func fetchStatus(ctx context.Context, cf *clientFlags) (console.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return cf.client().Status(ctx)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// statusCommand builds a status subcommand: fetch Status, print a part of
// it as a table or as JSON. history, if not nil, adds --history and -n:
// print the newest records the store keeps instead of the live state.
func statusCommand(name, usage string, part func(console.Status) any, render func(io.Writer, console.Status) error,
	history func(w io.Writer, h console.History, asJSON bool) error) func(ctx context.Context, e *env, args []string) int {
	return func(ctx context.Context, e *env, args []string) int {
		fs := newFlagSet(e, name, usage)
		var cf clientFlags
		cf.register(fs, true)
		var hist bool
		var n int
		if history != nil {
			fs.BoolVar(&hist, "history", false, "the newest records kept in the database instead of what is live now")
			fs.IntVar(&n, "n", console.DefaultHistory, "with --history: how many records")
		}
		if code := fs.parse(args, 0, 0); code >= 0 {
			return code
		}
		var err error
		if hist {
			if n < 1 || n > console.MaxHistory {
				e.errorf("%s: -n %d: want 1 to %d", name, n, console.MaxHistory)
				return 2
			}
			hctx, cancel := context.WithTimeout(ctx, requestTimeout)
			defer cancel()
			h, herr := cf.client().History(hctx, n)
			if herr != nil {
				return daemonError(e, herr)
			}
			err = history(e.stdout, localHistory(h), cf.json)
		} else {
			st, serr := fetchStatus(ctx, &cf)
			if serr != nil {
				return daemonError(e, serr)
			}
			if cf.json {
				err = printJSON(e.stdout, part(st))
			} else {
				err = render(e.stdout, st)
			}
		}
		if err != nil {
			e.errorf("%s: %v", name, err)
			return 1
		}
		return 0
	}
}

// records is a statusCommand's --history printer for one kind of record:
// the list the store keeps, as JSON or as render's table.
func records[T any](pick func(console.History) []T, render func(io.Writer, []T) error) func(io.Writer, console.History, bool) error {
	return func(w io.Writer, h console.History, asJSON bool) error {
		if asJSON {
			return printJSON(w, pick(h))
		}
		return render(w, pick(h))
	}
}

// localHistory shows record times in this machine's zone.
func localHistory(h console.History) console.History {
	for i := range h.Calls {
		c := &h.Calls[i]
		c.Start, c.Answer, c.End = local(c.Start), local(c.Answer), local(c.End)
	}
	for i := range h.Sessions {
		p := &h.Sessions[i]
		p.Start, p.End = local(p.Start), local(p.End)
	}
	return h
}

func local(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Local()
}

var cmdCalls = statusCommand("calls", `
Usage: isp-box calls [-s SOCKET] [--json] [--history [-n N]]

Lists the live calls through the PBX: who called which number, which peer
it went to, its state, how long it has lasted and been answered, and for
relayed media the packets, losses and jitter. With --history it lists the
newest N call records of the database instead (Asterisk's CDRs): start,
caller, number, callee, outcome (ANSWER, BUSY, NOANSWER, CANCEL,
CONGESTION, CHANUNAVAIL), SIP code, duration and talk time.`,
	func(st console.Status) any { return nonNil(st.Calls) },
	func(w io.Writer, st console.Status) error { return console.RenderCalls(w, st.Calls) },
	records(func(h console.History) []bus.CallEnded { return h.Calls }, console.RenderCallRecords))

var cmdLines = statusCommand("lines", `
Usage: isp-box lines [-s SOCKET] [--json]

Lists the modem lines in config order: device, the SIP peer the line sits
behind, state (opening, idle, ringing, connected, down...), how long in that
state, the call and PPP session on it, and its last CONNECT and error.`,
	func(st console.Status) any { return nonNil(st.Lines) },
	func(w io.Writer, st console.Status) error { return console.RenderLines(w, st.Lines) }, nil)

var cmdSessions = statusCommand("sessions", `
Usage: isp-box sessions [-s SOCKET] [--json] [--history [-n N]]

Lists the live PPP sessions: line, user, phase, addresses, authentication,
uptime and traffic. With --history it lists the newest N session records of
the database instead (the accounting pppd's radius plugin would send): start,
line, user, address, duration, bytes and packets each way, why it ended.`,
	func(st console.Status) any { return nonNil(st.Sessions) },
	func(w io.Writer, st console.Status) error { return console.RenderSessions(w, st.Sessions) },
	records(func(h console.History) []bus.PPPDown { return h.Sessions }, console.RenderSessionRecords))

var cmdStatus = statusCommand("status", `
Usage: isp-box status [-s SOCKET] [--json]

Shows the daemon at a glance: version, uptime, config file, network mode,
SIP address, how many peers, lines, calls and sessions, non-zero counters,
and the event bus: what each subscriber received, dropped or has queued.
--json prints the whole Status document that the other commands show parts of.`,
	func(st console.Status) any { return st },
	renderStatus, nil)

func renderStatus(w io.Writer, st console.Status) error {
	up := "-"
	if !st.Started.IsZero() {
		up = time.Since(st.Started).Round(time.Second).String()
	}
	online := 0
	for _, p := range st.Peers {
		if p.Online {
			online++
		}
	}
	fmt.Fprintf(w, "isp-box %s, up %s\n", st.Version, up)
	fmt.Fprintf(w, "config:   %s\n", st.Config)
	fmt.Fprintf(w, "network:  %s\n", st.Network)
	fmt.Fprintf(w, "sip:      %s\n", st.SIPAddr)
	fmt.Fprintf(w, "peers:    %d (%d online)\n", len(st.Peers), online)
	fmt.Fprintf(w, "lines:    %d\n", len(st.Lines))
	fmt.Fprintf(w, "calls:    %d\n", len(st.Calls))
	fmt.Fprintf(w, "sessions: %d\n", len(st.Sessions))
	nonZero := 0
	for _, c := range st.Counters {
		if c.Value != 0 {
			nonZero++
		}
	}
	if nonZero > 0 {
		fmt.Fprintln(w, "\nCounters:")
		if err := console.RenderCounters(w, st.Counters); err != nil {
			return err
		}
	}
	if len(st.Bans) > 0 {
		fmt.Fprintln(w, "\nBanned SIP sources (isp-box unban ADDR lifts one):")
		for _, b := range st.Bans {
			fmt.Fprintf(w, "  %-40s until %s\n", b.Addr, b.Until.Local().Format("2006-01-02 15:04:05"))
		}
	}
	fmt.Fprintln(w)
	return console.RenderBus(w, st.Bus)
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

var cmdRegistry = statusCommand("registry", `
Usage: isp-box registry [-s SOCKET] [--json]

Lists the box's registrations with SIP providers (the register => lines of
[general]) as Asterisk's "sip show registry" does: host, user, the expiry
the provider granted, state (Registered, Request Sent, Auth. Sent,
Rejected, Timeout, No Authentication, Failed) and when it last succeeded;
a failing one also shows its last error.`,
	func(st console.Status) any { return nonNil(st.Registry) },
	func(w io.Writer, st console.Status) error { return console.RenderRegistry(w, st.Registry) }, nil)

var cmdPeers = statusCommand("peers", `
Usage: isp-box peers [-s SOCKET] [--json]

Lists the SIP peers as Asterisk's "sip show peers" does: name/username,
host, dynamic, port, status (OK (N ms), UNREACHABLE, UNKNOWN, Unmonitored),
with the summary line of peers online and offline.`,
	func(st console.Status) any { return nonNil(st.Peers) },
	func(w io.Writer, st console.Status) error { console.RenderPeers(w, st.Peers); return nil }, nil)

func cmdPeer(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "peer", `
Usage: isp-box peer [-s SOCKET] [--json] NAME

Shows one SIP peer in detail as Asterisk's "sip show peer NAME" does:
secret set, context, type, address, registration contact and expiry, user
agent, qualify status, codecs, direct media and the line behind it.`)
	var cf clientFlags
	cf.register(fs, true)
	if code := fs.parse(args, 1, 1); code >= 0 {
		return code
	}
	name := fs.args[0]
	st, err := fetchStatus(ctx, &cf)
	if err != nil {
		return daemonError(e, err)
	}
	for _, p := range st.Peers {
		if p.Name != name {
			continue
		}
		if cf.json {
			err = printJSON(e.stdout, p)
		} else {
			console.RenderPeer(e.stdout, p)
		}
		if err != nil {
			e.errorf("peer: %v", err)
			return 1
		}
		return 0
	}
	e.errorf("peer %s not found", name)
	return 1
}

func cmdConsole(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "console", `
Usage: isp-box console [-s SOCKET] [--json] [--kind PREFIX[,PREFIX...]]

Connects to the daemon and prints its events as they happen, one line each,
like "asterisk -rvvv": time, kind, then the event behind "  == " (a state
changed), "    -- " (a call or session moved on) or "  !! " (trouble).
The stream is lossy by design: a console that cannot keep up never slows the
box down; it is told how many events it lost instead. Stop it with Ctrl-C.`)
	var cf clientFlags
	cf.register(fs, true)
	kinds := fs.String("kind", "", "only events whose kind starts with one of these comma-separated prefixes, e.g. call.,line.")
	if code := fs.parse(args, 0, 0); code >= 0 {
		return code
	}
	c := cf.client()
	vctx, cancel := context.WithTimeout(ctx, requestTimeout)
	v, err := c.Version(vctx)
	cancel()
	if err != nil {
		return daemonError(e, err)
	}
	if !cf.json {
		fmt.Fprintf(e.stdout, "Connected to isp-box %s currently running (pid = %d) on %s\n", v.Version, v.PID, c.Socket())
		sctx, cancel := context.WithTimeout(ctx, requestTimeout)
		if st, err := c.Status(sctx); err == nil {
			fmt.Fprintln(e.stdout, busLine(st.Bus))
		}
		cancel()
	}
	var prefixes []string
	if *kinds != "" {
		prefixes = splitList(*kinds)
	}
	err = c.EventStream(ctx, prefixes, func(l console.EventLine) error {
		if cf.json {
			return printJSONLine(e.stdout, l)
		}
		return console.RenderEvent(e.stdout, l)
	})
	if err != nil {
		return daemonError(e, err)
	}
	return 0
}

// busLine sums up the event bus in one console line: what each subscriber
// has dropped (lossy) or has queued (reliable).
func busLine(b console.BusStats) string {
	var parts []string
	for _, s := range b.Subscribers {
		if s.Reliable {
			parts = append(parts, fmt.Sprintf("%s: reliable, %d queued (high water %d)", s.Name, s.Queued, s.HighWater))
		} else {
			parts = append(parts, fmt.Sprintf("%s: lossy, %d dropped", s.Name, s.Dropped))
		}
	}
	line := fmt.Sprintf("  == Event bus: %d events published", b.Published)
	if len(parts) > 0 {
		line += "; " + strings.Join(parts, "; ")
	}
	return line
}

func printJSONLine(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func cmdReload(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "reload", `
Usage: isp-box reload [-s SOCKET]

Makes the daemon re-read its config file and apply it without dropping live
calls or sessions, as SIGHUP does. A config that fails validation is refused
and the running one stays; its problems are printed. Needs root or the
daemon's own user.`)
	var cf clientFlags
	cf.register(fs, false)
	if code := fs.parse(args, 0, 0); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := cf.client().Reload(ctx); err != nil {
		var ae *console.APIError
		if errors.As(err, &ae) {
			e.errorf("reload refused:\n%s", ae.Msg)
			return 1
		}
		return daemonError(e, err)
	}
	fmt.Fprintln(e.stdout, "config reloaded")
	return 0
}

func cmdUnban(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "unban", `
Usage: isp-box unban [-s SOCKET] ADDR

Lifts the ban on a SIP source address (status lists the banned ones): a
source is banned after maxauthfailures wrong passwords within bantime.
Needs root or the daemon's own user.`)
	var cf clientFlags
	cf.register(fs, false)
	if code := fs.parse(args, 1, 1); code >= 0 {
		return code
	}
	addr := fs.Arg(0)
	if _, err := netip.ParseAddr(addr); err != nil {
		e.errorf("unban: %q is not an IP address", addr)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := cf.client().Unban(ctx, addr)
	if err != nil {
		var ae *console.APIError
		if errors.As(err, &ae) {
			e.errorf("unban refused: %s", ae.Msg)
			return 1
		}
		return daemonError(e, err)
	}
	if !r.Lifted {
		fmt.Fprintf(e.stdout, "%s was not banned\n", r.Addr)
		return 0
	}
	fmt.Fprintf(e.stdout, "ban on %s lifted\n", r.Addr)
	return 0
}

func cmdVersion(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "version", `
Usage: isp-box version [-s SOCKET]

Prints the version of this binary, and of the daemon if one answers on the
control socket.`)
	var cf clientFlags
	cf.register(fs, false)
	if code := fs.parse(args, 0, 0); code >= 0 {
		return code
	}
	fmt.Fprintln(e.stdout, "isp-box", Version())
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if v, err := cf.client().Version(ctx); err == nil {
		fmt.Fprintf(e.stdout, "daemon: isp-box %s (%s %s/%s, pid %d, up since %s)\n", v.Version, v.Go, v.OS, v.Arch, v.PID,
			v.Started.Format(time.DateTime))
	}
	return 0
}
