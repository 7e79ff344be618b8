package demo

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestDemo(t *testing.T) {
	runDemo(t, "the demo dials in through the whole chain", Options{})
}

func TestDemoSoftmodem(t *testing.T) {
	runDemo(t, "the demo dials in through the box's own software modem (about 25 s)", Options{Softmodem: true})
}

// runDemo runs the demo with opts (skipped with -short, saying why) and
// fails the test when it fails; its output goes to the test log.
func runDemo(t *testing.T, why string, opts Options) {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, &out, opts)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
}
