package dialplan

import (
	"strconv"
	"strings"
)

// Match is the answer to "does this number exist in this context?".
type Match uint8

const (
	// NoMatch: nothing matches; chan_sip answers 404 Not Found.
	NoMatch Match = iota
	// Found: an extension matches and has priority 1.
	Found
	// Incomplete: the number is the beginning of an extension; with
	// allowoverlap=yes chan_sip answers 484 Address Incomplete.
	Incomplete
)

func (m Match) String() string {
	switch m {
	case Found:
		return "found"
	case Incomplete:
		return "incomplete"
	default: // NoMatch
	}
	return "no match"
}

// maxIncludeDepth bounds include => chains (Asterisk's AST_PBX_MAX_STACK is 128).
const maxIncludeDepth = 128

// find looks for the step for (exten, prio) in context, searching the
// context's extensions in sorted order and then its includes depth-first,
// as pbx_find_extension does: the first matching extension that HAS the
// priority wins, which is how a call "falls through" to a less specific
// pattern after the last priority of a more specific one.
func (p *Plan) find(ctx, exten string, prio int, label string, stack []string) *Step {
	c := p.contexts[ctx]
	if c == nil || len(stack) >= maxIncludeDepth {
		return nil
	}
	for _, s := range stack {
		if s == ctx { // include loop: Asterisk skips a context already on the stack
			return nil
		}
	}
	for _, x := range c.exts {
		if !x.pat.Match(exten) {
			continue
		}
		n := prio
		if label != "" {
			var ok bool
			if n, ok = x.labels[label]; !ok {
				continue
			}
		}
		if st := x.prios[n]; st != nil {
			return st
		}
	}
	stack = append(stack, ctx)
	for _, inc := range c.includes {
		if st := p.find(inc.name, exten, prio, label, stack); st != nil {
			return st
		}
	}
	return nil
}

// canMatch reports whether exten could match something with more digits.
func (p *Plan) canMatch(ctx, exten string, stack []string) bool {
	c := p.contexts[ctx]
	if c == nil || len(stack) >= maxIncludeDepth || strings.Contains(strings.Join(stack, "\x00")+"\x00", ctx+"\x00") {
		return false
	}
	for _, x := range c.exts {
		if x.pat.CanMatch(exten) {
			return true
		}
	}
	stack = append(stack, ctx)
	for _, inc := range c.includes {
		if p.canMatch(inc.name, exten, stack) {
			return true
		}
	}
	return false
}

// Lookup reports whether exten exists (with priority 1) in context.
func (p *Plan) Lookup(context, exten string) Match {
	if p.find(context, exten, 1, "", nil) != nil {
		return Found
	}
	if p.canMatch(context, exten, nil) {
		return Incomplete
	}
	return NoMatch
}

// maxSteps bounds one run, so that a Goto loop cannot spin forever.
const maxSteps = 1000

// Run executes a dial plan for one call. It is not safe for concurrent use;
// the Plan behind it is. The caller asks Next for each step, carries out
// the ones that need the network (Dial, Hangup, Busy...) and records
// Dial's outcome with SetDialStatus before asking for the next step.
type Run struct {
	plan       *Plan
	context    string
	exten      string
	prio       int
	steps      int
	DialStatus string // DIALSTATUS of the last Dial: ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL
	// Err is why the run stopped early (Goto to nowhere, step limit); "" when it fell off the end.
	Err string
}

// Start begins a run at priority 1 of exten in context. It returns nil and
// the reason when the number does not exist there.
func (p *Plan) Start(context, exten string) (*Run, Match) {
	m := p.Lookup(context, exten)
	if m != Found {
		return nil, m
	}
	return &Run{plan: p, context: context, exten: exten, prio: 1}, Found
}

// SetDialStatus records the outcome of the Dial just executed.
func (r *Run) SetDialStatus(s string) { r.DialStatus = s }

// Next returns the next step to carry out. Goto is followed inside Next
// and never returned. ok is false when the plan has nothing more to do for
// this call (the call "falls off" the dial plan; see Err).
func (r *Run) Next() (st Step, ok bool) {
	for {
		if r.steps >= maxSteps {
			r.Err = "too many dial plan steps (Goto loop?)"
			return Step{}, false
		}
		r.steps++
		s := r.plan.find(r.context, r.exten, r.prio, "", nil)
		if s == nil {
			return Step{}, false
		}
		if s.App != "Goto" {
			r.prio++
			out := *s
			return out, true
		}
		g := s.Goto
		ctx, ext := r.context, r.exten
		if g.Context != "" {
			ctx = g.Context
		}
		if g.Exten != "" {
			ext = g.Exten
		}
		n, err := strconv.Atoi(g.Priority)
		if err != nil {
			t := r.plan.find(ctx, ext, 0, g.Priority, nil)
			if t == nil {
				r.Err = "Goto (" + ctx + "," + ext + "," + g.Priority + "): no such label"
				return Step{}, false
			}
			n = t.Priority
		}
		if r.plan.find(ctx, ext, n, "", nil) == nil {
			r.Err = "Goto (" + ctx + "," + ext + "," + strconv.Itoa(n) + "): no such extension or priority"
			return Step{}, false
		}
		r.context, r.exten, r.prio = ctx, ext, n
	}
}

// Trace runs the plan for (context, exten) and returns every step it
// executes, asking dial for the DIALSTATUS of each Dial. A step that ends
// the call (Hangup, Busy, Congestion, or a Dial answered) ends the trace.
// It is what `dialplan show`-style tests and the config checker use.
func (p *Plan) Trace(context, exten string, dial func(Step) string) ([]Step, Match) {
	r, m := p.Start(context, exten)
	if r == nil {
		return nil, m
	}
	var out []Step
	for {
		st, ok := r.Next()
		if !ok {
			return out, m
		}
		out = append(out, st)
		switch st.App {
		case "Hangup", "Busy", "Congestion":
			return out, m
		case "Dial":
			s := dial(st)
			r.SetDialStatus(s)
			if s == "ANSWER" {
				return out, m
			}
		}
	}
}
