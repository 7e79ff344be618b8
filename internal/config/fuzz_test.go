package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// FuzzParse: no input panics Parse; every problem it reports names a file
// read and a line in it; Summary never panics, even on a config that
// failed.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../../examples/*.conf")
	golden, _ := filepath.Glob("testdata/*.txt")
	for _, p := range append(seeds, golden...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		in, _, _ := strings.Cut(string(data), "\n"+goldenSep+"\n")
		f.Add([]byte(in))
	}
	f.Add([]byte("[a](!,a)\n[b](a,a)\n#include inc.conf\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// inc.conf holds the same bytes, so includes (and cycles) are
		// exercised too.
		fsys := fstest.MapFS{"inc.conf": {Data: data}, "dir/x.conf": {Data: data}}
		cfg, err := Parse("fuzz.conf", data, fsys)
		if cfg == nil {
			t.Fatalf("nil config (err %v)", err)
		}
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			for _, e := range list {
				if e.File == "" || e.Line < 0 || e.Msg == "" {
					t.Fatalf("bad error %#v", e)
				}
			}
		}
		cfg.Summary(io.Discard)
	})
}
