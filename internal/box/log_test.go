package box_test

import (
	"strconv"
	"strings"
	"testing"
)

// boxComps are the parts of the box whose log a person reads ("": the
// box's own records); the rig's simulators (ata, hayes, client-ppp) log
// through the same buffer.
var boxComps = map[string]bool{"": true, "pbx": true, "modem": true, "ppp": true, "netstack": true, "store": true,
	"radius": true, "console": true, "dnsfwd": true}

// TestLogReadable (issue 11.6): the log of a start, one dial-in call and
// its hang-up and a stop, as a person reads it: every record names each
// key once, a part's messages do not repeat its name ("pbx: call" under
// comp=pbx), no record says err=<nil>, and no event is logged twice.
func TestLogReadable(t *testing.T) {
	ctx, r, b, s := dialedRig(t, "dials through the box")
	if _, err := s.Net.Ping(ctx, gateway); err != nil {
		t.Errorf("ping: %v", err)
	}
	hangUp(t, ctx, s, b.Box)
	b.Stop(t)

	seen := map[string]int{}
	comps := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(r.logs.String()), "\n") {
		kv, err := logfmt(line)
		if err != nil {
			t.Errorf("%v: %s", err, line)
			continue
		}
		comp := first(kv, "comp")
		if !boxComps[comp] {
			continue
		}
		comps[comp]++
		keys := map[string]bool{}
		for _, p := range kv {
			if keys[p[0]] {
				t.Errorf("key %s twice: %s", p[0], line)
			}
			keys[p[0]] = true
			if p[0] == "err" && p[1] == "<nil>" {
				t.Errorf("err=<nil> logged: %s", line)
			}
		}
		if msg := first(kv, "msg"); comp != "" && strings.HasPrefix(msg, comp+": ") {
			t.Errorf("message repeats comp=%s: %s", comp, line)
		}
		// The same record twice (time aside) is one event logged twice.
		seen[line[strings.Index(line, " level=")+1:]]++
	}
	for rec, n := range seen {
		if n > 1 {
			t.Errorf("logged %d times: %s", n, rec)
		}
	}
	// The log covered the parts of a dial-in: otherwise the checks above
	// read nothing.
	for _, c := range []string{"", "pbx", "modem", "ppp", "netstack"} {
		if comps[c] == 0 {
			t.Errorf("no record with comp=%s in the log of a call (parts logged: %v)", c, comps)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", r.logs.String())
	}
}

// first is the value of key's first occurrence in kv.
func first(kv [][2]string, key string) string {
	for _, p := range kv {
		if p[0] == key {
			return p[1]
		}
	}
	return ""
}

// logfmt splits a line of slog's TextHandler into its key=value pairs, in
// order; quoted values are unquoted.
func logfmt(line string) ([][2]string, error) {
	var out [][2]string
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimLeft(rest, " ") {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 || strings.ContainsRune(rest[:eq], ' ') {
			return nil, errNotLogfmt
		}
		key, v := rest[:eq], rest[eq+1:]
		var val string
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return nil, errNotLogfmt
			}
			val, _ = strconv.Unquote(q)
			rest = v[len(q):]
		} else {
			end := strings.IndexByte(v, ' ')
			if end < 0 {
				end = len(v)
			}
			val, rest = v[:end], v[end:]
		}
		out = append(out, [2]string{key, val})
	}
	return out, nil
}

var errNotLogfmt = errorString("not a key=value log line")

type errorString string

func (e errorString) Error() string { return string(e) }
