package dialplan

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Error is one problem in the dial plan, at the line that caused it.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Target is one destination of a Dial(): SIP/peer, SIP/peer/exten or
// HUNT/group.
type Target struct {
	Tech     string // "SIP" or "HUNT"
	Resource string // peer name (SIP) or hunt group name (HUNT)
	Exten    string // SIP/peer/exten: the number to put in the Request-URI; "" = the dialled one
	File     string
	Line     int
}

func (t Target) String() string {
	s := t.Tech + "/" + t.Resource
	if t.Exten != "" {
		s += "/" + t.Exten
	}
	return s
}

// DialArgs are Dial()'s parsed arguments (apps/app_dial.c).
type DialArgs struct {
	Targets []Target
	// Timeout is how long to ring; 0 means no limit ("136 years").
	Timeout time.Duration
	// Progress is the ^-value: if no ringing or progress by then, CHANUNAVAIL. 0 = none.
	Progress time.Duration
	Options  string // Dial options, kept as written
}

// Step is one priority of one extension: an application and its arguments.
type Step struct {
	Context  string
	Exten    string // the extension as written ("_X!")
	Priority int
	Label    string
	App      string   // canonical name: Dial, Hangup, Busy, Congestion, Answer, Wait, NoOp, Goto, Ringing, Progress, Set, Modem
	Args     []string // the arguments, split on commas and trimmed
	Dial     *DialArgs
	Cause    int           // Hangup(cause); 0 = none given (normal clearing)
	Duration time.Duration // Wait(t), Busy(t), Congestion(t)
	Goto     *GotoArgs
	Modem    *ModemArgs
	File     string
	Line     int
}

// GotoArgs is Goto([[context,]exten,]priority).
type GotoArgs struct {
	Context  string // "" = the current one
	Exten    string // "" = the current one
	Priority string // a number or a label
}

// ModemArgs is Modem(answer[,modulation]): the box answers the call with
// its own software modem.
type ModemArgs struct {
	Mode       string // "answer"
	Modulation string // v21, bell103, v22 or v22bis (the default)
}

// Plan is a compiled dial plan. It is immutable and safe for concurrent use.
type Plan struct {
	contexts map[string]*context
}

type context struct {
	name     string
	exts     []*extension // sorted with Compare, literals first
	includes []include
}

type include struct {
	name string
	file string
	line int
}

type extension struct {
	pat    *Pattern
	prios  map[int]*Step
	labels map[string]int
}

// apps maps the lower-case application name to its canonical spelling.
var apps = map[string]string{
	"dial": "Dial", "hangup": "Hangup", "busy": "Busy", "congestion": "Congestion",
	"answer": "Answer", "wait": "Wait", "noop": "NoOp", "goto": "Goto",
	"ringing": "Ringing", "progress": "Progress", "set": "Set", "modem": "Modem",
	// What answers a data call on the box's own lines: PPP (the default),
	// the text login only, or a bridge to a Telnet or raw TCP host (a BBS).
	// For a SIP call they are no-ops: the call still needs a Dial() to a
	// modem line, whose answer then runs the service.
	"ppp": "PPP", "login": "Login", "telnet": "Telnet", "tcp": "TCP",
}

// Compile checks and compiles dial plan lines. Every problem is reported,
// joined with errors.Join; each is an *Error naming the file and line.
// The Plan is never nil: with errors it holds the lines that compiled, so
// that a config checker can still list Targets.
func Compile(lines []Line) (*Plan, error) {
	p := &Plan{contexts: map[string]*context{}}
	var errs []error
	fail := func(l Line, format string, a ...any) {
		errs = append(errs, &Error{File: l.File, Line: l.Line, Msg: fmt.Sprintf(format, a...)})
	}
	type pending struct {
		inc include
		ctx string
	}
	var incs []pending
	var lastCtx string
	lastPri := -1 // previous priority in this context, for n and s
	var lastExt string
	for _, l := range lines {
		if l.Context == "" {
			fail(l, "dial plan line outside a context")
			continue
		}
		c := p.contexts[l.Context]
		if c == nil {
			c = &context{name: l.Context}
			p.contexts[l.Context] = c
		}
		if l.Context != lastCtx {
			lastCtx, lastPri, lastExt = l.Context, -1, ""
		}
		switch strings.ToLower(strings.TrimSpace(l.Key)) {
		case "include":
			name, _, _ := strings.Cut(l.Value, ",") // ",timing" is accepted and ignored
			name = strings.TrimSpace(name)
			if name == "" {
				fail(l, "include => needs a context name")
				continue
			}
			inc := include{name: name, file: l.File, line: l.Line}
			c.includes = append(c.includes, inc)
			incs = append(incs, pending{inc, l.Context})
		case "exten", "same":
			ext, pri, app, err := splitExten(l)
			if err != nil {
				fail(l, "%v", err)
				continue
			}
			if strings.EqualFold(strings.TrimSpace(l.Key), "same") {
				if lastExt == "" {
					fail(l, "same => without a previous exten => in context [%s]", l.Context)
					continue
				}
				app = pri
				pri = ext
				ext = lastExt
			}
			if strings.Contains(ext, "/") {
				fail(l, "extension %q: caller ID matching is not supported", ext)
				continue
			}
			pat, err := ParsePattern(ext)
			if err != nil {
				fail(l, "extension %q: %v", ext, err)
				continue
			}
			lastExt = ext
			x := c.find(pat)
			prioText, label := pri, ""
			if i := strings.IndexByte(pri, '('); i >= 0 {
				if !strings.HasSuffix(pri, ")") {
					fail(l, "priority %q: label without ')'", pri)
					continue
				}
				prioText, label = strings.TrimSpace(pri[:i]), strings.TrimSpace(pri[i+1:len(pri)-1])
			}
			if strings.EqualFold(prioText, "hint") {
				continue // hints are for device state, never executed
			}
			n, err := priority(prioText, lastPri, x)
			if err != nil {
				fail(l, "%v", err)
				continue
			}
			lastPri = n
			st, err := parseApp(app)
			if err != nil {
				fail(l, "%v", err)
				continue
			}
			st.Context, st.Exten, st.Priority, st.Label, st.File, st.Line = l.Context, ext, n, label, l.File, l.Line
			if st.Dial != nil {
				for i := range st.Dial.Targets {
					st.Dial.Targets[i].File, st.Dial.Targets[i].Line = l.File, l.Line
				}
			}
			if x == nil {
				x = &extension{pat: pat, prios: map[int]*Step{}, labels: map[string]int{}}
				c.exts = append(c.exts, x)
			}
			if old, dup := x.prios[n]; dup {
				fail(l, "extension %s priority %d already defined at %s:%d", ext, n, old.File, old.Line)
				continue
			}
			if label != "" {
				if _, dup := x.labels[label]; dup {
					fail(l, "extension %s: label %q defined twice", ext, label)
					continue
				}
				x.labels[label] = n
			}
			x.prios[n] = st
		default:
			fail(l, "unknown dial plan key %q (want exten, same or include)", l.Key)
		}
	}
	for _, pi := range incs {
		if _, ok := p.contexts[pi.inc.name]; !ok {
			errs = append(errs, &Error{File: pi.inc.file, Line: pi.inc.line,
				Msg: fmt.Sprintf("include => %s: no such context", pi.inc.name)})
		}
	}
	for _, c := range p.contexts {
		slices.SortStableFunc(c.exts, func(a, b *extension) int { return Compare(a.pat, b.pat) })
	}
	if len(errs) > 0 {
		return p, errors.Join(errs...)
	}
	return p, nil
}

// find returns the extension with the same (normalised) name, if any.
func (c *context) find(p *Pattern) *extension {
	for _, x := range c.exts {
		if x.pat.literal == p.literal && x.pat.norm == p.norm {
			return x
		}
	}
	return nil
}

// splitExten splits "ext,prio,app(args)"; a comma inside [] in the
// extension does not split.
func splitExten(l Line) (ext, pri, app string, err error) {
	v := l.Value
	depth, cut := 0, -1
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				cut = i
			}
		}
		if cut >= 0 {
			break
		}
	}
	if cut < 0 {
		cut = strings.IndexByte(v, ',') // an unclosed '[': let the pattern parser say so
	}
	if cut < 0 {
		return "", "", "", fmt.Errorf("expected %s => extension,priority,Application(args)", l.Key)
	}
	ext = strings.TrimSpace(v[:cut])
	pri, app, ok := strings.Cut(v[cut+1:], ",")
	if strings.EqualFold(strings.TrimSpace(l.Key), "same") {
		// same => priority,App(args): ext is the priority, pri+app is the app
		if !ok {
			return ext, strings.TrimSpace(v[cut+1:]), "", nil
		}
		return ext, strings.TrimSpace(v[cut+1:]), "", nil
	}
	if !ok {
		return "", "", "", fmt.Errorf("expected %s => extension,priority,Application(args)", l.Key)
	}
	return ext, strings.TrimSpace(pri), strings.TrimSpace(app), nil
}

// priority resolves n, s, +N, a number or an existing label
// (pbx_config.c pbx_load_config).
func priority(s string, last int, x *extension) (int, error) {
	switch strings.ToLower(s) {
	case "":
		return 0, errors.New("missing priority")
	case "n", "next":
		if last < 0 {
			return 0, errors.New("priority 'n' without a previous priority in this context")
		}
		return last + 1, nil
	case "s", "same":
		if last < 0 {
			return 0, errors.New("priority 's' without a previous priority in this context")
		}
		return last, nil
	}
	if s[0] == '+' || strings.HasPrefix(strings.ToLower(s), "n+") {
		off, err := strconv.Atoi(s[strings.IndexByte(s, '+')+1:])
		if err != nil || off < 1 {
			return 0, fmt.Errorf("invalid priority %q", s)
		}
		if last < 0 {
			return 0, fmt.Errorf("priority %q without a previous priority in this context", s)
		}
		return last + off, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return 0, fmt.Errorf("invalid priority %d (must be 1 or more)", n)
		}
		return n, nil
	}
	if x != nil {
		if n, ok := x.labels[s]; ok {
			return n, nil
		}
	}
	return 0, fmt.Errorf("invalid priority or unknown label %q", s)
}

// parseApp parses "App(args)", "App" or the old "App,args".
func parseApp(s string) (*Step, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("missing application")
	}
	name, args := s, ""
	if i := strings.IndexByte(s, '('); i >= 0 {
		if !strings.HasSuffix(s, ")") {
			return nil, fmt.Errorf("application %q: missing ')'", s)
		}
		name, args = s[:i], s[i+1:len(s)-1]
	} else if i := strings.IndexByte(s, ','); i >= 0 {
		name, args = s[:i], s[i+1:]
	}
	name = strings.TrimSpace(name)
	canon, ok := apps[strings.ToLower(name)]
	if !ok {
		return nil, unknownApp(name)
	}
	st := &Step{App: canon}
	if strings.TrimSpace(args) != "" {
		for a := range strings.SplitSeq(args, ",") {
			st.Args = append(st.Args, strings.TrimSpace(a))
		}
	}
	arg := func(i int) string {
		if i < len(st.Args) {
			return st.Args[i]
		}
		return ""
	}
	var err error
	switch canon {
	case "Dial":
		st.Dial, err = parseDial(st.Args)
	case "Hangup":
		if c := arg(0); c != "" {
			st.Cause, err = strconv.Atoi(c)
			if err != nil || st.Cause < 0 || st.Cause > 127 {
				err = fmt.Errorf("Hangup(%s): cause must be a number 0-127", c)
			}
		}
	case "Wait", "Busy", "Congestion":
		if a := arg(0); a != "" {
			st.Duration, err = seconds(a)
			if err != nil {
				err = fmt.Errorf("%s(%s): %w", canon, a, err)
			}
		} else if canon == "Wait" {
			err = errors.New("Wait() needs a number of seconds")
		}
	case "Goto":
		g := &GotoArgs{}
		switch len(st.Args) {
		case 1:
			g.Priority = arg(0)
		case 2:
			g.Exten, g.Priority = arg(0), arg(1)
		case 3:
			g.Context, g.Exten, g.Priority = arg(0), arg(1), arg(2)
		default:
			err = errors.New("Goto([[context,]extension,]priority) takes 1 to 3 arguments")
		}
		if err == nil && g.Priority == "" {
			err = errors.New("Goto: empty priority")
		}
		st.Goto = g
	case "Telnet", "TCP":
		if len(st.Args) != 1 || st.Args[0] == "" {
			err = fmt.Errorf("%s(host:port) takes one argument, the host to connect the caller to", canon)
			break
		}
		host, port, serr := net.SplitHostPort(st.Args[0])
		switch {
		case serr != nil && canon == "Telnet" && !strings.ContainsAny(st.Args[0], ":/ "):
			st.Args[0] = net.JoinHostPort(st.Args[0], "23") // telnet's port
		case serr != nil || host == "" || port == "":
			err = fmt.Errorf("%s(%s): expected host:port like bbs.example.org:23", canon, st.Args[0])
		default:
			if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
				err = fmt.Errorf("%s(%s): port %q is not 1-65535", canon, st.Args[0], port)
			}
		}
	case "PPP", "Login":
		if len(st.Args) > 0 {
			err = fmt.Errorf("%s() takes no arguments", canon)
		}
	case "Modem":
		m := &ModemArgs{Mode: strings.ToLower(arg(0)), Modulation: strings.ToLower(arg(1))}
		if m.Modulation == "" {
			m.Modulation = "v22bis"
		}
		switch {
		case m.Mode != "answer":
			err = fmt.Errorf("Modem(%s): the mode must be answer", arg(0))
		case len(st.Args) > 2:
			err = errors.New("Modem(answer[,modulation]) takes 1 or 2 arguments")
		default:
			switch m.Modulation {
			case "v21", "bell103", "v22", "v22bis":
			default:
				err = fmt.Errorf("Modem: unknown modulation %q (v21, bell103, v22 or v22bis)", arg(1))
			}
		}
		st.Modem = m
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// parseDial parses Dial(Tech/res[&Tech/res...][,timeout[^progress][,options]]).
func parseDial(args []string) (*DialArgs, error) {
	if len(args) == 0 || args[0] == "" {
		return nil, errors.New("Dial() needs at least one target such as SIP/peer")
	}
	d := &DialArgs{}
	for t := range strings.SplitSeq(args[0], "&") {
		t = strings.TrimSpace(t)
		tech, res, ok := strings.Cut(t, "/")
		if !ok || res == "" {
			return nil, fmt.Errorf("Dial target %q: expected Tech/resource", t)
		}
		tg := Target{Tech: strings.ToUpper(tech)}
		tg.Resource, tg.Exten, _ = strings.Cut(res, "/")
		switch tg.Tech {
		case "SIP", "HUNT":
		default:
			return nil, fmt.Errorf("Dial target %q: technology %q not supported (SIP or HUNT)", t, tech)
		}
		if tg.Resource == "" {
			return nil, fmt.Errorf("Dial target %q: empty peer name", t)
		}
		d.Targets = append(d.Targets, tg)
	}
	if len(args) > 1 && args[1] != "" {
		to, prog, hasProg := strings.Cut(args[1], "^")
		var err error
		if to != "" {
			if d.Timeout, err = seconds(to); err != nil {
				return nil, fmt.Errorf("Dial timeout %q: %w", args[1], err)
			}
		}
		if hasProg {
			if d.Progress, err = seconds(prog); err != nil {
				return nil, fmt.Errorf("Dial progress timeout %q: %w", args[1], err)
			}
		}
	}
	if len(args) > 2 {
		d.Options = strings.Join(args[2:], ",")
	}
	return d, nil
}

func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || math.IsNaN(f) || f > 1e7 {
		return 0, errors.New("expected a number of seconds")
	}
	return time.Duration(f * float64(time.Second)), nil
}

// Targets lists every Dial() target in the plan, in file order, with the
// line of the Dial. The config checker uses it to find Dial(SIP/x) to a
// peer that does not exist.
func (p *Plan) Targets() []Target {
	var out []Target
	for _, c := range p.contexts {
		for _, x := range c.exts {
			for _, st := range x.prios {
				if st.Dial != nil {
					out = append(out, st.Dial.Targets...)
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Target) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return 0
	})
	return out
}

// Contexts returns the names of the contexts, sorted.
func (p *Plan) Contexts() []string {
	out := make([]string, 0, len(p.contexts))
	for n := range p.contexts {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// HasContext reports whether the plan defines the context.
func (p *Plan) HasContext(name string) bool { _, ok := p.contexts[name]; return ok }

// unknownApp says what to write instead of an application the box does
// not run: the one a typo most likely meant, or the list of those it has.
func unknownApp(name string) error {
	lower := strings.ToLower(name)
	best, bestD := "", len(lower)/3+2
	keys := slices.Sorted(maps.Keys(apps))
	for _, k := range keys {
		if d := editDistance(lower, k); d < bestD {
			best, bestD = apps[k], d
		}
	}
	if best != "" {
		return fmt.Errorf("unknown application %q (did you mean %s?)", name, best)
	}
	names := make([]string, 0, len(apps))
	for _, canon := range apps {
		names = append(names, canon)
	}
	slices.Sort(names)
	return fmt.Errorf("unknown application %q: isp-box runs %s", name, strings.Join(names, ", "))
}

// editDistance is the optimal-string-alignment distance between a and b:
// Levenshtein plus the swap of two neighbours ("Dail"), one edit each.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
