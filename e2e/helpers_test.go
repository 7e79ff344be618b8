package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/examples"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/testutil"
)

// ringInterval keeps the tests fast: the modems ring every 300 ms instead
// of the real 6 s cadence.
const ringInterval = 300 * time.Millisecond

// pap2t parses the example config the demo runs, optionally rewritten.
func pap2t(t testing.TB, rewrite func(string) string) *config.Config {
	t.Helper()
	src := string(examples.PAP2T)
	if rewrite != nil {
		src = rewrite(src)
	}
	cfg, err := config.Parse("examples/pap2t.conf", []byte(src), examples.FS)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// parse parses an inline config.
func parse(t testing.TB, name, src string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(name, []byte(src), nil)
	if err != nil {
		t.Fatalf("config %s: %v\n%s", name, err, src)
	}
	return cfg
}

// world is a demo.World with what the tests watch: every bus event, in
// order (a reliable subscription) and the ATA's line state changes.
type world struct {
	*demo.World
	t    testing.TB
	logs *testutil.LogBuffer

	mu     sync.Mutex
	events []bus.Event
	ata    []ata.LineInfo
	grew   chan struct{}
}

type worldOpts struct {
	level slog.Level
	// keepNetwork runs the config's own [network] (kernel mode) instead of
	// the demo's userspace network.
	keepNetwork bool
}

// startWorld starts a World on cfg in t's temporary directory, waits until
// it can take calls, and closes it (and checks for leaked goroutines) when
// t ends.
func startWorld(t testing.TB, cfg *config.Config, o worldOpts) *world {
	t.Helper()
	checkGoroutines(t)
	logs := &testutil.LogBuffer{}
	w := &world{t: t, logs: logs, grew: make(chan struct{}, 1)}
	t.Cleanup(func() {
		if t.Failed() || verbose() {
			t.Logf("last log lines:\n%s", logs.Tail(150))
		}
	})
	b := bus.New(nil)
	sub := b.SubscribeReliable("e2e", nil)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for env := range sub.C() {
			w.mu.Lock()
			w.events = append(w.events, env.Event)
			w.mu.Unlock()
			w.signal()
		}
	}()
	t.Cleanup(func() { sub.Close(); <-subDone })
	level := o.level
	if level == 0 {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dw, err := demo.Start(ctx, demo.WorldOptions{
		Config: cfg, Dir: t.TempDir(), RingInterval: ringInterval, Log: log, Bus: b,
		KeepNetwork: o.keepNetwork,
		Notify: func(li ata.LineInfo) {
			w.mu.Lock()
			w.ata = append(w.ata, li)
			w.mu.Unlock()
			w.signal()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.World = dw
	t.Cleanup(func() {
		if err := dw.Close(); err != nil {
			t.Errorf("World.Close: %v", err)
		}
	})
	if err := dw.WaitReady(ctx); err != nil {
		t.Fatalf("world not ready: %v", err)
	}
	checkLineBusy(t, dw.Box.Status())
	return w
}

func (w *world) signal() {
	select {
	case w.grew <- struct{}{}:
	default:
	}
}

// waitEvent waits until an event seen so far (from the start) satisfies
// match, and returns it.
func waitEvent[T bus.Event](t testing.TB, w *world, timeout time.Duration, match func(T) bool) T {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		for _, ev := range w.events {
			if e, ok := ev.(T); ok && (match == nil || match(e)) {
				w.mu.Unlock()
				return e
			}
		}
		w.mu.Unlock()
		select {
		case <-w.grew:
		case <-deadline.C:
			var zero T
			t.Fatalf("no %T event matching within %v", zero, timeout)
			return zero
		}
	}
}

// waitEventsOf waits until n events of type T that match have been seen
// (the bus hands them to the test's subscriber a moment after they are
// published), and returns those seen by then, n or fewer.
func waitEventsOf[T bus.Event](w *world, timeout time.Duration, n int, match func(T) bool) []T {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		got := eventsOf(w, match)
		if len(got) >= n {
			return got
		}
		select {
		case <-w.grew:
		case <-deadline.C:
			return got
		}
	}
}

// eventsOf returns the events of type T seen so far that match.
func eventsOf[T bus.Event](w *world, match func(T) bool) []T {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []T
	for _, ev := range w.events {
		if e, ok := ev.(T); ok && (match == nil || match(e)) {
			out = append(out, e)
		}
	}
	return out
}

// ataStates returns the call states the ATA line with SIP user peer went
// through, in order, without repeats.
func (w *world) ataStates(peer string) []ata.CallState {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ata.CallState
	for _, li := range w.ata {
		if li.User != peer {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != li.Call {
			out = append(out, li.Call)
		}
	}
	return out
}

// checkGoroutines fails t if, once everything t started is cleaned up,
// more goroutines run than before it (beyond a few that the runtime and
// net/http keep).
func checkGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		const slack = 8
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before+slack {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d before, %d after the test (slack %d)\n%s", before, n, slack, buf)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// webServer serves page on host loopback (reached by clients at the
// gateway's address) until t ends; it returns the port.
func webServer(t testing.TB, page string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		io.WriteString(rw, page)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// fetch gets http://gateway:port/ through the client's stack and checks
// it is page.
func fetch(ctx context.Context, s *demo.Session, port int, page string) error {
	url := fmt.Sprintf("http://%s:%d/", s.PPP.Remote(), port)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	hc := s.Net.HTTPClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != 200 || string(body) != page {
		return fmt.Errorf("GET %s: %s, %d bytes, want 200 and %d bytes", url, resp.Status, len(body), len(page))
	}
	return nil
}

func verbose() bool { return os.Getenv("ISPBOX_E2E_VERBOSE") != "" }
