// Command testreport reads `go test -json` on stdin and writes what a
// person reading CI output needs: each package's result line as it ends,
// the full output of every failed test, and at the end the list of skipped
// tests with the reason each gave, so that a test skipped for a missing
// tool or privilege cannot pass unnoticed. The last line is the summary
// "N passed, N failed, N skipped". It exits 1 when any test or package
// failed (including build failures), 2 on unreadable input.
//
//	go test -json ./... | go run ./tools/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output and build-fail
}

type testKey struct{ pkg, test string }

// skip is one skipped test and the reason its output gave.
type skip struct {
	Package, Test, Reason string
}

type report struct {
	out      io.Writer
	buf      map[testKey][]string
	skips    []skip
	passed   int
	failed   int
	failures []string // "pkg Test" or "pkg (build)" in order
}

func newReport(out io.Writer) *report {
	return &report{out: out, buf: make(map[testKey][]string)}
}

func (r *report) event(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.out, e.Output)
		return
	case "build-fail":
		r.failed++
		r.failures = append(r.failures, e.ImportPath+" (build)")
		return
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			// Package-level lines: "ok  pkg 1.2s", "FAIL pkg", panics
			// outside a test, "[no test files]". The bare PASS line that
			// precedes "ok" says nothing.
			if e.Output != "PASS\n" {
				fmt.Fprint(r.out, e.Output)
			}
		case "fail":
			// A package fails without a failed test when it does not
			// build, panics in TestMain or times out.
			if !r.anyFailedIn(e.Package) {
				r.failed++
				r.failures = append(r.failures, e.Package+" (package)")
			}
		}
		return
	}
	k := testKey{e.Package, e.Test}
	switch e.Action {
	case "output":
		r.buf[k] = append(r.buf[k], e.Output)
	case "pass":
		r.passed++
		delete(r.buf, k)
	case "fail":
		r.failed++
		r.failures = append(r.failures, e.Package+" "+e.Test)
		for _, l := range r.buf[k] {
			fmt.Fprint(r.out, l)
		}
		delete(r.buf, k)
	case "skip":
		r.skips = append(r.skips, skip{e.Package, e.Test, skipReason(r.buf[k])})
		delete(r.buf, k)
	}
}

func (r *report) anyFailedIn(pkg string) bool {
	for _, f := range r.failures {
		if strings.HasPrefix(f, pkg+" ") {
			return true
		}
	}
	return false
}

// skipReason is what the test said last (t.Skip's "    file.go:12: why"
// comes after any t.Log), without the RUN/SKIP framing.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		t := strings.TrimSpace(lines[i])
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		return t
	}
	return "(no reason given)"
}

func (r *report) finish() {
	sort.SliceStable(r.skips, func(i, j int) bool {
		if r.skips[i].Package != r.skips[j].Package {
			return r.skips[i].Package < r.skips[j].Package
		}
		return r.skips[i].Test < r.skips[j].Test
	})
	if len(r.skips) > 0 {
		fmt.Fprintf(r.out, "\nskipped tests (%d):\n", len(r.skips))
		for _, s := range r.skips {
			fmt.Fprintf(r.out, "  %s %s: %s\n", s.Package, s.Test, s.Reason)
		}
	}
	if len(r.failures) > 0 {
		fmt.Fprintf(r.out, "\nfailed (%d):\n", len(r.failures))
		for _, f := range r.failures {
			fmt.Fprintf(r.out, "  %s\n", f)
		}
	}
	fmt.Fprintf(r.out, "\n%d passed, %d failed, %d skipped\n", r.passed, r.failed, len(r.skips))
}

// run copies non-JSON lines (e.g. a vet or linker message on stderr
// merged into stdin) through unchanged.
func run(in io.Reader, out io.Writer) (failed bool, err error) {
	r := newReport(out)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		r.event(e)
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("testreport: reading go test -json: %w", err)
	}
	r.finish()
	return r.failed > 0, nil
}

func main() {
	failed, err := run(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
