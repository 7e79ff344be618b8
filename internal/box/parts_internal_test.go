package box

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/testutil"
)

// TestPartExitStopsTheRest: a part whose Run returns while the box runs is
// reported once, by name, with its error; stop then stops the others in
// reverse and does not report it again.
func TestPartExitStopsTheRest(t *testing.T) {
	testutil.LeakCheck(t)
	var mu sync.Mutex
	var stopped []string
	fail := make(chan struct{})
	mk := func(name string, exit <-chan struct{}) part {
		return part{name: name, open: func() (runner, error) {
			return runFunc(func(ctx context.Context) error {
				select {
				case <-ctx.Done():
					mu.Lock()
					stopped = append(stopped, name)
					mu.Unlock()
					return nil
				case <-exit:
					return errors.New("lost its socket")
				}
			}), nil
		}}
	}
	var logs testutil.LogBuffer
	ps := newParts(slog.New(slog.NewTextHandler(&logs, nil)))
	for _, p := range []part{mk("a", nil), mk("b", fail), mk("c", nil)} {
		if err := ps.start(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	close(fail)
	select {
	case r := <-ps.Exited():
		if err := partError(r.name, r.err); err.Error() != "box: b: lost its socket" {
			t.Errorf("exit reported as %q", err)
		}
		r.err = nil // reported (as Box.Run does)
	case <-time.After(10 * time.Second):
		t.Fatal("the exit of b was not reported")
	}
	ps.stop()
	if want := []string{"c", "a"}; !slices.Equal(stopped, want) {
		t.Errorf("stopped %q, want %q", stopped, want)
	}
	if logs.Grep("with an error") != "" {
		t.Errorf("the exit was logged again at stop:\n%s", logs.String())
	}
}
