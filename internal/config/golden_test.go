package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the expected part of testdata golden files")

const goldenSep = "----------"

// goldenCase is one testdata/*.txt: the main config (named NAME.conf),
// optional extra files after `-- name --` lines (for includes), a
// `----------` line, then the expected output.
type goldenCase struct {
	main  string
	fsys  fstest.MapFS
	input string // everything before the separator, for rewriting
	want  string
}

func readGolden(t testing.TB, path string) goldenCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	input, want, ok := strings.Cut(text, "\n"+goldenSep+"\n")
	if !ok {
		t.Fatalf("%s: no %s line", path, goldenSep)
	}
	gc := goldenCase{fsys: fstest.MapFS{}, input: input, want: want}
	name := strings.TrimSuffix(filepath.Base(path), ".txt") + ".conf"
	cur := name
	var buf strings.Builder
	flush := func() {
		if cur == name {
			gc.main = buf.String()
		}
		gc.fsys[cur] = &fstest.MapFile{Data: []byte(buf.String())}
		buf.Reset()
	}
	for _, line := range strings.SplitAfter(input+"\n", "\n") {
		trimmed := strings.TrimRight(line, "\n")
		if strings.HasPrefix(trimmed, "-- ") && strings.HasSuffix(trimmed, " --") && len(trimmed) > 6 {
			flush()
			cur = trimmed[3 : len(trimmed)-3]
			continue
		}
		buf.WriteString(line)
	}
	flush()
	return gc
}

// render is what a golden file expects: warnings, then either the error
// lines or the normalized JSON of the config (or of the fields a first
// line `; golden: Field Field.Sub` selects).
func render(name, src string, fsys fstest.MapFS) string {
	cfg, err := Parse(name, []byte(src), fsys)
	var b strings.Builder
	if cfg != nil {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(&b, "warning: %s\n", w)
		}
	}
	if err != nil {
		var list ErrorList
		errors.As(err, &list)
		for _, e := range list {
			fmt.Fprintf(&b, "%s\n", e)
		}
		return b.String()
	}
	first, _, _ := strings.Cut(src, "\n")
	if sel, ok := strings.CutPrefix(first, "; golden:"); ok {
		for _, path := range strings.Fields(sel) {
			v := reflect.ValueOf(cfg).Elem()
			for _, f := range strings.Split(path, ".") {
				v = v.FieldByName(f)
			}
			fmt.Fprintf(&b, "%s: ", path)
			writeJSON(&b, v, "")
			b.WriteString("\n")
		}
		return b.String()
	}
	full := *cfg
	full.Warnings = nil // already listed above
	writeJSON(&b, reflect.ValueOf(&full).Elem(), "")
	b.WriteString("\n")
	return b.String()
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	levelType    = reflect.TypeFor[slog.Level]()
	modeType     = reflect.TypeFor[os.FileMode]()
	addrType     = reflect.TypeFor[netip.Addr]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	addrPortType = reflect.TypeFor[netip.AddrPort]()
)

// writeJSON writes v as indented JSON in field order, leaving out zero
// fields and showing durations, modes, levels and addresses as text.
func writeJSON(b *strings.Builder, v reflect.Value, indent string) {
	switch v.Type() {
	case durationType:
		b.WriteString(quote(time.Duration(v.Int()).String()))
		return
	case levelType:
		b.WriteString(quote(slog.Level(v.Int()).String()))
		return
	case modeType:
		b.WriteString(quote(fmt.Sprintf("%#o", v.Uint())))
		return
	case addrType, prefixType, addrPortType:
		b.WriteString(quote(fmt.Sprint(v.Interface())))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if e, ok := v.Interface().(*Error); ok {
			b.WriteString(quote(e.Error()))
			return
		}
		writeJSON(b, v.Elem(), indent)
	case reflect.Struct:
		b.WriteString("{")
		n := 0
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() || v.Field(i).IsZero() || (v.Field(i).Kind() == reflect.Slice && v.Field(i).Len() == 0) {
				continue
			}
			if n > 0 {
				b.WriteString(",")
			}
			n++
			fmt.Fprintf(b, "\n%s  %s: ", indent, quote(f.Name))
			writeJSON(b, v.Field(i), indent+"  ")
		}
		if n > 0 {
			b.WriteString("\n" + indent)
		}
		b.WriteString("}")
	case reflect.Slice:
		b.WriteString("[")
		for i := range v.Len() {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(b, "\n%s  ", indent)
			writeJSON(b, v.Index(i), indent+"  ")
		}
		if v.Len() > 0 {
			b.WriteString("\n" + indent)
		}
		b.WriteString("]")
	default:
		data, err := json.Marshal(v.Interface())
		if err != nil {
			data = []byte(quote(fmt.Sprint(v.Interface())))
		}
		b.Write(data)
	}
}

func quote(s string) string {
	data, _ := json.Marshal(s)
	return string(data)
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			gc := readGolden(t, path)
			name := strings.TrimSuffix(filepath.Base(path), ".txt") + ".conf"
			got := render(name, gc.main, gc.fsys)
			if *update {
				if err := os.WriteFile(path, []byte(gc.input+"\n"+goldenSep+"\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(gc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestExamples loads every examples/*.conf from disk (includes and all):
// each must load with no error, and its mapped config must match
// testdata/examples/NAME.json.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.conf")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, path := range files {
		base := strings.TrimSuffix(filepath.Base(path), ".conf")
		t.Run(base, func(t *testing.T) {
			cfg, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%s):\n%v", path, err)
			}
			var b strings.Builder
			for _, w := range cfg.Warnings {
				fmt.Fprintf(&b, "warning: %s\n", w)
			}
			writeJSON(&b, reflect.ValueOf(cfg).Elem(), "")
			b.WriteString("\n")
			var sum bytes.Buffer
			cfg.Summary(&sum)
			b.WriteString("\n" + sum.String())
			golden := filepath.Join("testdata", "examples", base+".golden")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}
