package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// The man page and completions come from the commands' own help: every
// command is in them, with its flags, and the scripts parse.
func TestManAndCompletion(t *testing.T) {
	ctx := context.Background()
	code, man, _ := runCmd(ctx, "man")
	if code != 0 || !strings.HasPrefix(man, ".TH ISP-BOX 1") {
		t.Fatalf("man: %d %.80q", code, man)
	}
	code, bash, _ := runCmd(ctx, "completion", "bash")
	if code != 0 {
		t.Fatal("completion bash failed")
	}
	code, zsh, _ := runCmd(ctx, "completion", "zsh")
	if code != 0 {
		t.Fatal("completion zsh failed")
	}
	for _, c := range commands() {
		if !strings.Contains(man, ".SS "+c.name+"\n") {
			t.Errorf("man page lacks command %s", c.name)
		}
		if !strings.Contains(bash, "\t"+c.name+") ") || !strings.Contains(zsh, "'"+c.name+":") {
			t.Errorf("completion lacks command %s", c.name)
		}
	}
	for _, w := range []string{`serve) COMPREPLY=($(compgen -W "-c --db --log-level --network -s --help"`, `doctor) COMPREPLY=($(compgen -W "-c --db -s --user --help"`} {
		if !strings.Contains(bash, w) {
			t.Errorf("bash completion lacks %q", w)
		}
	}
	for _, sh := range []struct{ shell, script string }{{"bash", bash}, {"zsh", zsh}} {
		path, err := exec.LookPath(sh.shell)
		if err != nil {
			continue // zsh is not on every machine; bash is
		}
		c := exec.Command(path, "-n")
		c.Stdin = strings.NewReader(sh.script)
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh.shell, err, out)
		}
	}
	if code, _, errOut := runCmd(ctx, "completion", "fish"); code != 2 || !strings.Contains(errOut, "want bash or zsh") {
		t.Errorf("completion fish: %d %q", code, errOut)
	}
}
