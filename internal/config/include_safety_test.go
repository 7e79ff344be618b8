package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIncludeSafety: an #include names any file root may read. Its content
// reaches messages only in short excerpts; devices, FIFOs and huge files are
// refused instead of read; an overlong line (a 100 MB useragent) is refused.
func TestIncludeSafety(t *testing.T) {
	dir := t.TempDir()
	const secret = "SECRETSALT$HASHHASHHASHHASH"
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var shadow strings.Builder
	for i := range 40 {
		shadow.WriteString("user" + string(rune('a'+i%26)) + ":$6$" + secret + ":19000:0:99999:7:::\n")
	}
	write("shadow", shadow.String())
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	write("big.conf", "[general]\n;"+strings.Repeat("x", 2<<20)+"\n")
	tests := []struct {
		name, conf string
		want       []string // in the errors
	}{
		{"shadow in a sip section", "[general]\ncontext=default\n#include \"shadow\"\n", []string{`found "usera:$6$SEC…" (`, "30 more problems in this file are not shown"}},
		{"shadow in users", "[users]\n#include \"shadow\"\n", []string{`"usera:$6$SEC…" (`}},
		{"shadow in ppp", "[ppp]\n#include \"shadow\"\n", []string{`"usera:$6$SEC…" (`}},
		{"shadow in mgetty", "[mgetty]\n#include \"shadow\"\n", []string{`unknown key "usera:$6$sec…" (`}},
		{"dev zero", "[general]\n#include \"/dev/zero\"\n", []string{`#include "/dev/zero": not a regular file (a character device)`}},
		{"fifo", "[general]\n#include \"fifo\"\n", []string{`#include "fifo": not a regular file (a FIFO)`}},
		{"huge file", "[general]\n#include \"big.conf\"\n", []string{`#include "big.conf": 2097164 bytes; a config file may have at most 1048576`}},
		{"huge value", "[general]\nuseragent=" + strings.Repeat("A", 5000) + "\n", []string{":2: line is 5010 bytes long; at most 4096 are read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			main := write("main.conf", tt.conf)
			done := make(chan error, 1)
			go func() { _, err := Load(main); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Load hangs")
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "SECRETSALT") || strings.Contains(msg, "secretsalt") || strings.Contains(msg, "HASHHASH") {
				t.Fatalf("an included file's content in the errors:\n%s", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors lack %q:\n%s", w, msg)
				}
			}
			if len(msg) > 4000 {
				t.Errorf("%d bytes of errors", len(msg))
			}
		})
	}
}
