package pppdvm

import (
	"os/exec"
	"strings"
	"testing"
)

// TestInputsHashMatchesBuildSh: Available's staleness check computes the
// same stamp as tools/pppd-vm/build.sh's shell pipeline.
func TestInputsHashMatchesBuildSh(t *testing.T) {
	dir := toolsDir()
	if dir == "" {
		t.Skip("not in a checkout with tools/pppd-vm")
	}
	got, err := inputsHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", `here=$PWD; (cat "$here/build.sh"; find "$here/guest" -type f -print0 | LC_ALL=C sort -z | xargs -0 cat) | sha256sum | cut -d' ' -f1`)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(out)); got != want {
		t.Errorf("inputsHash %s, build.sh computes %s", got, want)
	}
}
