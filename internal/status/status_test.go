package status

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestJSONNames: every field of every status type has its own JSON name,
// snake_case as the control socket's, never "-": a field the components
// fill reaches the console's JSON (cmd/isp-box TestJSONGolden checks the
// documents the CLI prints).
func TestJSONNames(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	for _, v := range []any{Peer{}, Call{}, Registration{}, Line{}, Session{}, Network{}, NetSession{}} {
		typ := reflect.TypeOf(v)
		seen := map[string]string{}
		for f := range typ.Fields() {
			tag, ok := f.Tag.Lookup("json")
			name, _, _ := strings.Cut(tag, ",")
			switch {
			case !ok || name == "":
				t.Errorf("%s.%s has no JSON name", typ.Name(), f.Name)
			case !snake.MatchString(name):
				t.Errorf("%s.%s: JSON name %q is not snake_case", typ.Name(), f.Name, name)
			case seen[name] != "":
				t.Errorf("%s.%s: JSON name %q is %s's too", typ.Name(), f.Name, name, seen[name])
			}
			seen[name] = f.Name
		}
	}
}
