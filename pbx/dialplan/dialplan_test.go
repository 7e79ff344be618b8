package dialplan

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pat, data string
		match     bool
		can       bool // CanMatch
	}{
		{"_X!", "5", true, true},
		{"_X!", "88567682", true, true},
		{"_X!", "", false, true},
		{"_X!", "s", false, false},
		{"_X!", "a1", false, false},
		{"_X!", "1a", true, true}, // '!' matches anything after, not only digits
		{"_!", "", true, true},
		{"_X.", "5", false, true},
		{"_X.", "55", true, true},
		{"_X.", "5*#", true, true},
		{"_NXX", "200", true, true},
		{"_NXX", "100", false, false},
		{"_NXX", "20", false, true},
		{"_NXX", "2000", false, false},
		{"_ZX", "09", false, false},
		{"_ZX", "19", true, true},
		{"_nxx", "299", true, true}, // lower case n/x/z are the same as upper
		{"_[1235-9]", "4", false, false},
		{"_[1235-9]", "7", true, true},
		{"_[-5]", "-", false, true}, // data '-' is a separator, skipped: nothing left
		{"_[a-c]X", "b5", true, true},
		{"_[XN]", "X", true, true}, // X inside a set is the letter
		{"_[XN]", "5", false, false},
		{"_1-800-NXX", "1800555", true, true},
		{"_1-800-NXX", "1-800-555", true, true},
		{"_1 800", "1800", true, true},
		{"881", "881", true, true},
		{"881", "88", false, true},
		{"881", "8810", false, false},
		{"8-8-1", "881", true, true},
		{"881", "8-81", true, true},
		{"s", "s", true, true},
		{"_X.5", "12", true, true}, // '.' ends matching: the 5 is dead
	}
	for _, tt := range tests {
		t.Run(tt.pat+"/"+tt.data, func(t *testing.T) {
			p, err := ParsePattern(tt.pat)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Match(tt.data); got != tt.match {
				t.Errorf("Match(%q) = %v, want %v", tt.data, got, tt.match)
			}
			if got := p.CanMatch(tt.data); got != tt.can {
				t.Errorf("CanMatch(%q) = %v, want %v", tt.data, got, tt.can)
			}
		})
	}
}

func TestParsePatternErrors(t *testing.T) {
	for _, s := range []string{"", "_", "_[12", "_X[]", "_--"} {
		if _, err := ParsePattern(s); err == nil {
			t.Errorf("ParsePattern(%q): no error", s)
		}
	}
}

// The order from Asterisk's Pattern-Matching documentation, plus literals
// and the '.'/'!' pair.
func TestCompareOrder(t *testing.T) {
	want := []string{"100", "881", "_640X", "_64NX", "_64XX", "_6[34]NX", "_6[45]NX", "_6XX1", "_6.", "_X.", "_X!"}
	for i := 0; i < 20; i++ {
		got := slices.Clone(want)
		rand.Shuffle(len(got), func(a, b int) { got[a], got[b] = got[b], got[a] })
		slices.SortFunc(got, func(a, b string) int {
			pa, _ := ParsePattern(a)
			pb, _ := ParsePattern(b)
			return Compare(pa, pb)
		})
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("order (-want +got):\n%s", d)
		}
	}
	more := [][2]string{
		{"_1", "_N"},       // a literal character is a set of one
		{"_N", "_Z"},       // 8 < 9
		{"_Z", "_X"},       // 9 < 10
		{"_X", "_[0-9a]"},  // 10 < 11
		{"_[13]", "_[23]"}, // same size, lower first char
		{"_[14]", "_[15]"}, // same size and first, bitmap decides
		{"_X5", "_X"},      // a character before the end
		{"_X.", "_X!"},
		{"_X!", "_X"}, // hmm: '!' (0x28000) sorts before end (0x30000)
	}
	for _, m := range more {
		a, _ := ParsePattern(m[0])
		b, _ := ParsePattern(m[1])
		if Compare(a, b) >= 0 || Compare(b, a) <= 0 {
			t.Errorf("want %s before %s", m[0], m[1])
		}
	}
	a, _ := ParsePattern("_X-X")
	b, _ := ParsePattern("_XX")
	if Compare(a, b) != 0 {
		t.Error("_X-X and _XX differ")
	}
}

func lines(ctx string, text string) []Line {
	var out []Line
	n := 0
	for l := range strings.SplitSeq(text, "\n") {
		n++
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "[") {
			ctx = strings.Trim(l, "[]")
			continue
		}
		k, v, _ := strings.Cut(l, "=>")
		out = append(out, Line{Context: ctx, Key: strings.TrimSpace(k), Value: strings.TrimSpace(v), File: "extensions.conf", Line: n})
	}
	return out
}

func mustCompile(t *testing.T, text string) *Plan {
	t.Helper()
	p, err := Compile(lines("default", text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSeedPlan(t *testing.T) {
	p := mustCompile(t, "exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)")
	steps, m := p.Trace("default", "88567682", func(Step) string { return "NOANSWER" })
	if m != Found || len(steps) != 1 {
		t.Fatalf("got %v %v", m, steps)
	}
	want := &DialArgs{Targets: []Target{{Tech: "SIP", Resource: "pap2t-ispmodem", File: "extensions.conf", Line: 1}}, Timeout: 20 * time.Second}
	if d := cmp.Diff(want, steps[0].Dial); d != "" {
		t.Error(d)
	}
	if m := p.Lookup("default", "s"); m != NoMatch {
		t.Errorf("s: %v", m)
	}
	if m := p.Lookup("nosuch", "1"); m != NoMatch {
		t.Errorf("unknown context: %v", m)
	}
	if got := p.Targets(); len(got) != 1 || got[0].Resource != "pap2t-ispmodem" || got[0].Line != 1 {
		t.Errorf("Targets = %+v", got)
	}
}

func appsOf(steps []Step) []string {
	var out []string
	for _, s := range steps {
		a := s.App
		if len(s.Args) > 0 {
			a += "(" + strings.Join(s.Args, ",") + ")"
		}
		out = append(out, a)
	}
	return out
}

func TestRun(t *testing.T) {
	plan := `
[default]
exten => 881,1,NoOp(literal)
same => n,Dial(SIP/pap2t-ispmodem,20)
same => n,Hangup(17)
exten => _88X,1,NoOp(pattern)
 same => n,Dial(SIP/a&SIP/b,5^2,tT)
exten => _8XX,1,NoOp(wider)
exten => _8XX,2,Wait(1)
exten => _8XX,3,Congestion
exten => _X.,1,Dial(HUNT/modems,30)
exten => _X.,n(busy),Busy(3)
exten => _X.,n,Hangup
exten => 5,1,Goto(work,100,1)
exten => 6,1,Goto(7,lbl)
exten => 7,1,NoOp(seven)
exten => 7,10(lbl),Answer()
exten => 7,n,Goto(lbl)
include => work
[work]
exten => _1XX,1,Hangup(21)
exten => 100,1,Busy()
`
	p := mustCompile(t, plan)
	ans := func(Step) string { return "ANSWER" }
	no := func(Step) string { return "NOANSWER" }
	tests := []struct {
		exten string
		dial  func(Step) string
		want  []string
		m     Match
	}{
		{"881", no, []string{"NoOp(literal)", "Dial(SIP/pap2t-ispmodem,20)", "Hangup(17)"}, Found},
		{"881", ans, []string{"NoOp(literal)", "Dial(SIP/pap2t-ispmodem,20)"}, Found},
		// _88X has 1,2; priority 3 falls through to _8XX's 3, then
		// _X.'s priority 4? none: _X. has 1,2,3 -> no 4: end.
		{"882", no, []string{"NoOp(pattern)", "Dial(SIP/a&SIP/b,5^2,tT)", "Congestion"}, Found},
		{"892", no, []string{"NoOp(wider)", "Wait(1)", "Congestion"}, Found},
		{"12345", no, []string{"Dial(HUNT/modems,30)", "Busy(3)"}, Found},
		{"5", no, []string{"Busy"}, Found},
		{"150", no, []string{"Dial(HUNT/modems,30)", "Busy(3)"}, Found}, // own patterns before includes
		{"8", no, nil, Incomplete},
		{"88", no, []string{"Dial(HUNT/modems,30)", "Busy(3)"}, Found},
		{"", no, nil, Incomplete}, // E_CANMATCH: every pattern can still match
		{"abc", no, nil, NoMatch},
	}
	for _, tt := range tests {
		t.Run(tt.exten, func(t *testing.T) {
			steps, m := p.Trace("default", tt.exten, tt.dial)
			if m != tt.m {
				t.Fatalf("match %v, want %v", m, tt.m)
			}
			if d := cmp.Diff(tt.want, appsOf(steps)); d != "" {
				t.Errorf("steps (-want +got):\n%s", d)
			}
		})
	}
	// Goto loop through a label ends at the step limit.
	r, _ := p.Start("default", "6")
	n := 0
	for {
		_, ok := r.Next()
		if !ok {
			break
		}
		n++
	}
	if r.Err == "" || n == 0 {
		t.Errorf("loop: n=%d err=%q", n, r.Err)
	}
	s, _ := p.Trace("default", "882", no)
	if d := s[1].Dial; d.Timeout != 5*time.Second || d.Progress != 2*time.Second || d.Options != "tT" || len(d.Targets) != 2 {
		t.Errorf("dial args %+v", d)
	}
	if s[0].Priority != 1 || s[1].Priority != 2 || s[2].Priority != 3 || s[2].Exten != "_8XX" {
		t.Errorf("priorities %+v", s)
	}
}

func TestIncludeOrderAndLoops(t *testing.T) {
	p := mustCompile(t, `
[a]
include => b
include => c
[b]
include => a
exten => _1X,1,Hangup(1)
[c]
exten => 11,1,Hangup(2)
`)
	steps, _ := p.Trace("a", "11", nil)
	// depth-first in the order listed: b before c, even though c has a literal
	if len(steps) != 1 || steps[0].Cause != 1 {
		t.Errorf("got %+v", steps)
	}
	if m := p.Lookup("a", "99"); m != NoMatch {
		t.Errorf("99: %v", m)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"exten => _X!,1,Dial(IAX2/x)", []string{"extensions.conf:1: Dial target \"IAX2/x\": technology \"IAX2\" not supported (SIP or HUNT)"}},
		{"exten => _X!,1,Dial()", []string{"extensions.conf:1: Dial() needs at least one target such as SIP/peer"}},
		{"exten => _X!,1,Dial(SIP/a,abc)", []string{`extensions.conf:1: Dial timeout "abc": expected a number of seconds`}},
		{"exten => _X!,1,Dail(SIP/a)", []string{`extensions.conf:1: unknown application "Dail" (did you mean Dial?)`}},
		{"exten => _X!,1,Playback(x)", []string{`extensions.conf:1: unknown application "Playback": isp-box runs Answer, Busy, Congestion, Dial, Goto, Hangup, Login, Modem, NoOp, PPP, Progress, Ringing, Set, TCP, Telnet, Wait`}},
		{"exten => 1,1,Modem(call)", []string{"extensions.conf:1: Modem(call): the mode must be answer"}},
		{"exten => 1,1,Modem(answer,v34)", []string{`extensions.conf:1: Modem: unknown modulation "v34" (v21, bell103, v22 or v22bis)`}},
		{"exten => _X!,n,NoOp", []string{"extensions.conf:1: priority 'n' without a previous priority in this context"}},
		{"same => 1,NoOp", []string{"extensions.conf:1: same => without a previous exten => in context [default]"}},
		{"exten => _X[!,1,NoOp", []string{`extensions.conf:1: extension "_X[!": pattern "_X[!": '[' without ']'`}},
		{"exten => 1,1,NoOp\nexten => 1,1,NoOp", []string{"extensions.conf:2: extension 1 priority 1 already defined at extensions.conf:1"}},
		{"include => demo", []string{"extensions.conf:1: include => demo: no such context"}},
		{"exten => 1,1,Hangup(300)", []string{"extensions.conf:1: Hangup(300): cause must be a number 0-127"}},
		{"exten => 1,1,Dial(SIP/a", []string{`extensions.conf:1: application "Dial(SIP/a": missing ')'`}},
		{"exten => 1", []string{"extensions.conf:1: expected exten => extension,priority,Application(args)"}},
		{"exten => 1,x,NoOp", []string{`extensions.conf:1: invalid priority or unknown label "x"`}},
		{"foo => 1", []string{`extensions.conf:1: unknown dial plan key "foo" (want exten, same or include)`}},
		{"exten => 1,1,NoOp\nexten => 2,1,Wait\nexten => 3,0,NoOp", []string{
			"extensions.conf:2: Wait() needs a number of seconds",
			"extensions.conf:3: invalid priority 0 (must be 1 or more)"}},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			_, err := Compile(lines("default", tt.text))
			if err == nil {
				t.Fatal("no error")
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var pe *Error
				if !errors.As(e, &pe) {
					t.Fatalf("%v is not *Error", e)
				}
				got = append(got, pe.Error())
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestModemApp(t *testing.T) {
	p := mustCompile(t, "exten => 5550000,1,Modem(answer)\nexten => 5550001,1,Modem(Answer,V21)")
	for _, tc := range []struct{ exten, mod string }{{"5550000", "v22bis"}, {"5550001", "v21"}} {
		r, _ := p.Start("default", tc.exten)
		st, ok := r.Next()
		if !ok || st.App != "Modem" || st.Modem == nil || st.Modem.Mode != "answer" || st.Modem.Modulation != tc.mod {
			t.Errorf("%s: %+v %+v", tc.exten, st, st.Modem)
		}
	}
}

func TestPriorities(t *testing.T) {
	p := mustCompile(t, `
exten => 1,1,NoOp(a)
exten => 2,n,NoOp(b)
exten => 2,n(lb),NoOp(c)
exten => 1,+5,NoOp(d)
exten => 1,n(x),NoOp(e)
exten => 1,hint,SIP/foo
`)
	_ = p
	// n counts from the previous line in the file, whatever its extension.
	_, err := Compile(lines("default", "exten => 1,1,NoOp\nexten => 2,n,NoOp\nexten => 2,s,NoOp\nexten => 2,x,NoOp"))
	want := "extensions.conf:3: extension 2 priority 2 already defined at extensions.conf:2\nextensions.conf:4: invalid priority or unknown label \"x\""
	if err == nil || err.Error() != want {
		t.Errorf("err = %v", err)
	}
	for _, c := range []struct {
		exten string
		prio  int
		label string
	}{{"1", 1, ""}, {"1", 8, ""}, {"1", 9, "x"}, {"2", 3, "lb"}} {
		st := p.find("default", c.exten, c.prio, "", nil)
		if st == nil || st.Label != c.label {
			t.Errorf("%s,%d: %+v", c.exten, c.prio, st)
		}
	}
	if st := p.find("default", "1", 0, "x", nil); st == nil || st.Priority != 9 {
		t.Errorf("label x: %+v", st)
	}
}

func FuzzPattern(f *testing.F) {
	for _, s := range []string{"_X!", "_NXX", "_[1-3]X.", "881", "_1-800-NXX", "_[a-", "_!", "_X.", "_[9-0]"} {
		f.Add(s, "88567682", "_X.")
	}
	f.Fuzz(func(t *testing.T, pat, data, other string) {
		p, err := ParsePattern(pat)
		if err != nil {
			return
		}
		m := p.Match(data)
		if m && !p.CanMatch(data) {
			t.Fatalf("%q matches %q but CanMatch is false", pat, data)
		}
		if p.literal && m && stripData(data) != p.norm {
			t.Fatalf("literal %q matched %q", pat, data)
		}
		if q, err := ParsePattern(other); err == nil {
			a, b := Compare(p, q), Compare(q, p)
			if (a < 0) != (b > 0) || (a == 0) != (b == 0) {
				t.Fatalf("Compare(%q,%q)=%d, reverse %d", pat, other, a, b)
			}
		}
		if Compare(p, p) != 0 {
			t.Fatalf("Compare(%q, itself) != 0", pat)
		}
	})
}

func FuzzCompile(f *testing.F) {
	f.Add("exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)\n[x]\ninclude => default\nsame => n,Hangup", "88567682")
	f.Add("exten => 1,1,Goto(1,1)", "1")
	f.Add("exten => _X.,1,Dial(HUNT/m&SIP/a,1^2,t)\nexten => _X.,n(l),Goto(l)", "12")
	f.Fuzz(func(t *testing.T, text, exten string) {
		p, err := Compile(lines("default", text))
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not *Error", err)
			}
		}
		if p == nil {
			t.Fatal("nil plan")
		}
		for _, tg := range p.Targets() {
			if tg.Tech != "SIP" && tg.Tech != "HUNT" || tg.Resource == "" {
				t.Fatalf("bad target %+v", tg)
			}
		}
		for _, c := range p.Contexts() {
			p.Trace(c, exten, func(Step) string { return "NOANSWER" })
		}
	})
}
