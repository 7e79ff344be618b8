// Package spandsppeer runs spandsp (Debian's libspandsp-dev) as the far
// modem of the softmodem tests: testdata/peer.c, compiled by the test with
// gcc, exchanging G.711 blocks over a pipe. The product never links
// spandsp; only tests build the peer.
package spandsppeer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/isp-box/isp-box/softmodem/g711"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// required reports whether a missing peer must fail the test (CI) rather
// than skip it.
func required() bool {
	return os.Getenv("ISPBOX_REQUIRE_ROOT") == "1" || os.Getenv("ISPBOX_REQUIRE_SPANDSP") == "1"
}

// Binary returns the path of the built peer, skipping the test (failing it
// in CI) when gcc or libspandsp-dev is missing.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "testdata", "peer.c")
		dir, err := os.MkdirTemp("", "spandsppeer")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "peer")
		out, err := exec.Command("gcc", "-O2", "-o", binary, src, "-lspandsp", "-lm").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building the spandsp peer (needs gcc and libspandsp-dev): %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		if required() {
			t.Fatal(buildErr)
		}
		t.Skip(buildErr)
	}
	return binary
}

// Peer is a running spandsp peer: an endpoint of a linesim.Line.
type Peer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	law    g711.Law
	stderr bytes.Buffer
	in     []byte
	out    []byte
	err    error
}

// Start runs the peer with args (see peer.c); the law is args[1]'s.
func Start(t testing.TB, law g711.Law, args ...string) *Peer {
	t.Helper()
	bin := Binary(t)
	l := "u"
	if law == g711.Alaw {
		l = "a"
	}
	full := append([]string{args[0], l}, args[1:]...)
	p := &Peer{cmd: exec.Command(bin, full...), law: law}
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Wait() })
	return p
}

// Process sends one received block to the peer and returns its block.
func (p *Peer) Process(rx, tx []int16) {
	if p.err != nil {
		clear(tx)
		return
	}
	p.in = append(p.in[:0], make([]byte, len(rx))...)
	p.law.Encode(p.in, rx)
	if _, err := p.stdin.Write(p.in); err != nil {
		p.err = err
		clear(tx)
		return
	}
	if cap(p.out) < len(tx) {
		p.out = make([]byte, len(tx))
	}
	if _, err := io.ReadFull(p.stdout, p.out[:len(tx)]); err != nil {
		p.err = err
		clear(tx)
		return
	}
	p.law.Decode(tx, p.out[:len(tx)])
}

// Wait ends the peer (closing its input) and returns its event log.
func (p *Peer) Wait() (string, error) {
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
		err := p.cmd.Wait()
		if p.err == nil && err != nil {
			p.err = fmt.Errorf("peer: %w: %s", err, p.stderr.String())
		}
	}
	return p.stderr.String(), p.err
}

// Events returns the lines of the peer's event log that contain substr.
func Events(log, substr string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
