package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestPPPWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{in: `dial * "dial" *`, want: []string{"dial", "*", "dial", "*"}},
		{in: `ms-dns 8.8.8.8        # DNS server for the client`, want: []string{"ms-dns", "8.8.8.8"}},
		{in: `# all comment`, want: nil},
		{in: `a#b c`, want: []string{"a#b", "c"}},               // # only starts a comment at a word's start
		{in: `"two words" x`, want: []string{"two words", "x"}}, // quotes keep blanks
		{in: `ab"c d"e`, want: []string{"abc de"}},              // quotes inside a word
		{in: `'it''s'`, want: []string{"its"}},
		{in: `"" x`, want: []string{"", "x"}}, // an empty word
		{in: `a\sb \t \101\x41\x4 \q`, want: []string{"a b", "\t", "AA\x04", "q"}},
		{in: `"a\"b"`, want: []string{`a"b`}},
		{in: `dial "dial`, err: "unterminated quoted string: \"dial"},
		{in: `a\`, err: "backslash at the end of the line"},
	}
	for _, tt := range tests {
		got, err := pppWords(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("pppWords(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("pppWords(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("pppWords(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	// mgetty chat strings keep their backslashes for the chat program.
	got, err := splitWords(`"" \dATQ0V1H0 OK ATS0=0Q0&D3&C1 OK`)
	if err != nil || !cmp.Equal(got, []string{"", `\dATQ0V1H0`, "OK", "ATS0=0Q0&D3&C1", "OK"}) {
		t.Errorf("splitWords = %q, %v", got, err)
	}
}

func TestSplitMgetty(t *testing.T) {
	tests := []struct{ in, key, val string }{
		{" port-mode 0660", "port-mode", "0660"},
		{"rings = 2", "rings", "2"},
		{"rings=2", "rings", "2"},
		{"speed 9600 # comment", "speed", "9600"},
		{`login-prompt "@ login: # not a comment "`, "login-prompt", `"@ login: # not a comment "`},
		{"data-only", "data-only", ""},
		{"Debug 9", "debug", "9"},
	}
	for _, tt := range tests {
		k, v := splitMgetty(tt.in)
		if k != tt.key || v != tt.val {
			t.Errorf("splitMgetty(%q) = %q, %q; want %q, %q", tt.in, k, v, tt.key, tt.val)
		}
	}
}

// TestLoadErrors: Load reports an unreadable file as one Error, and
// errors in included files carry the included file's path.
func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.conf"))
	var list ErrorList
	ok := errors.As(err, &list)
	if !ok || len(list) != 1 || !strings.Contains(list[0].Error(), "nope.conf: cannot read config: no such file or directory") {
		t.Fatalf("Load(missing) = %v", err)
	}

	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.conf", "[general]\nrealm=x\n#include sub/peers.conf\nbogus=1\n")
	write("sub/peers.conf", "[a]\ntype=friend\nqualify=soon\n#include ../main.conf\n")
	_, err = Load(filepath.Join(dir, "main.conf"))
	main, sub := filepath.Join(dir, "main.conf"), filepath.Join(dir, "sub", "peers.conf")
	got := err.Error()
	// bogus=1 follows the include, so it is in the included file's
	// section [a], as Asterisk inlines includes.
	wantLines := []string{
		sub + `:3: qualify: "soon" is not yes, no or a number of milliseconds`,
		sub + `:4: #include "../main.conf": include cycle: ` + main + " -> " + sub + " -> " + main,
		main + `:4: unknown key "bogus" in peer [a]`,
	}
	// Sorted by file in read order: main.conf first.
	wantText := wantLines[2] + "\n" + wantLines[0] + "\n" + wantLines[1]
	if got != wantText {
		t.Errorf("Load errors:\n%s\nwant:\n%s", got, wantText)
	}
}

// TestAsideFiles: issue-file and @secret are read relative to the file
// that names them and listed in Files.
func TestAsideFiles(t *testing.T) {
	fsys := fstest.MapFS{
		"etc/issue":      {Data: []byte("Welcome to the ISP\n")},
		"etc/dial.pass":  {Data: []byte("s3cret # a comment\nignored\n")},
		"etc/inc/x.conf": {Data: []byte("[users]\ndial * @../dial.pass *\n")},
	}
	src := "[mgetty]\nport ttyS0\n issue-file issue\n#include inc/x.conf\n"
	cfg, err := Parse("etc/main.conf", []byte(src), fsys)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lines[0].Modem.Issue != "Welcome to the ISP\n" {
		t.Errorf("issue = %q", cfg.Lines[0].Modem.Issue)
	}
	if len(cfg.Users) != 1 || cfg.Users[0].Secret != "s3cret" {
		t.Errorf("users = %+v", cfg.Users)
	}
	// Config files first, in the order read; then the files they name.
	wantFiles := []string{"etc/main.conf", "etc/inc/x.conf", "etc/issue", "etc/dial.pass"}
	if diff := cmp.Diff(wantFiles, cfg.Files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	_, err = Parse("main.conf", []byte("[mgetty]\nissue-file /etc/issue\nissue-file none\n"), fsys)
	want := "main.conf:2: issue-file: an absolute path cannot be read here (only relative includes work without Load)\n" +
		"main.conf:3: issue-file: cannot read none: file does not exist"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// TestWindowsText: a BOM and CRLF line ends change nothing.
func TestWindowsText(t *testing.T) {
	src := "\ufeff[general]\r\nrealm=box\r\n[users]\r\ndial * \"dial\" *\r\n"
	cfg, err := Parse("win.conf", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PBX.General.Realm != "box" || len(cfg.Users) != 1 || cfg.Users[0].Secret != "dial" || cfg.Users[0].Addrs[0] != "*" {
		t.Errorf("realm %q, users %+v", cfg.PBX.General.Realm, cfg.Users)
	}
}
