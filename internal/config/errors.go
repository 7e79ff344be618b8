package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a config file, at the line that causes it.
type Error struct {
	File string
	Line int
	Msg  string
}

// Error returns "file:line: msg".
func (e *Error) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ErrorList is every problem found in one load. Load returns all of them at
// once, sorted by file (in the order the files were read) then line, so a
// user fixes a config in one pass.
type ErrorList []*Error

// Error joins the problems, one per line.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find a single *Error in the list.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// sortErrors orders errs by the rank of their file in files (the read
// order), then by line. Files not in the list sort after, by name.
func sortErrors(errs []*Error, files []string) {
	rank := make(map[string]int, len(files))
	for i, f := range files {
		if _, ok := rank[f]; !ok {
			rank[f] = i
		}
	}
	r := func(f string) int {
		if i, ok := rank[f]; ok {
			return i
		}
		return len(files)
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if ra, rb := r(a.File), r(b.File); ra != rb {
			return ra < rb
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
}

// diag collects errors and warnings while a config is read.
type diag struct {
	errs  []*Error
	warns []*Error
}

func (d *diag) errorf(file string, line int, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (d *diag) warnf(file string, line int, format string, args ...any) {
	d.warns = append(d.warns, &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// suggest returns " (did you mean X?)" when one of known is a likely typo
// of got, or "".
func suggest(got string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(got, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > len(got)/3+1 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
