package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden feeds each testdata/*.json (go test -json output, written by
// hand to cover pass, skip with and without a reason, fail, subtests, a
// build failure and a stray non-JSON line) and compares the report.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			failed, err := run(bytes.NewReader(data), &out)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Contains(string(data), `"Action":"fail"`); failed != want {
				t.Errorf("failed = %v, want %v", failed, want)
			}
			golden := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(string(want), out.String()); d != "" {
				t.Errorf("report (-want +got):\n%s", d)
			}
		})
	}
}
