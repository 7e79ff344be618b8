package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/testutil"
)

// highFDEnv makes the test binary, run again by TestHighFileDescriptors,
// be the child that dials in with every new descriptor numbered above 1024.
const highFDEnv = "ISPBOX_E2E_HIGHFD_CHILD"

// TestHighFileDescriptors: a box with many open files (a big modem bank,
// many SIP and control connections) gets descriptor numbers above 1023
// for its modem lines. The whole demo path must still work. It runs in a
// child process because a failure here is a crash of the process (a
// select(2) fd_set holds descriptors 0..1023 only), which would take the
// other tests with it.
func TestHighFileDescriptors(t *testing.T) {
	if os.Getenv(highFDEnv) != "" {
		highFDChild(t)
		return
	}
	if testing.Short() {
		t.Skip("dials in through the whole chain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHighFileDescriptors$", "-test.v")
	cmd.Env = append(os.Environ(), highFDEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || !strings.Contains(out.String(), "--- PASS: TestHighFileDescriptors") {
		text := out.String()
		if i := strings.Index(text, "panic:"); i >= 0 {
			text = text[i:min(len(text), i+3000)]
		} else if len(text) > 6000 {
			text = text[len(text)-6000:]
		}
		t.Fatalf("the dial-in with descriptors above 1023 failed (%v):\n%s", err, text)
	}
}

func highFDChild(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < 4096 {
		t.Skipf("RLIMIT_NOFILE %d: too low to open 1100 files", rl.Cur)
	}
	// Fill descriptors 3..1100, so that everything the chain opens gets a
	// number above 1024.
	var held []*os.File
	for i := 0; i < 1100; i++ {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
	}
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out testutil.LogBuffer
	if err := demo.Run(ctx, &out, demo.Options{RingInterval: ringInterval}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
}
