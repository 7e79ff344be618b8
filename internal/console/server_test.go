package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/status"
	"github.com/isp-box/isp-box/internal/testutil"
)

type daemon struct {
	srv    *Server
	sock   string
	bus    *bus.Bus
	served chan error
}

// startDaemon runs a Server on a fresh socket and stops it at cleanup,
// checking that Serve ended with ErrServerClosed.
func startDaemon(t *testing.T, opts ServerOptions) *daemon {
	t.Helper()
	if opts.Bus == nil {
		opts.Bus = bus.New(nil)
	}
	sock := filepath.Join(testutil.ShortDir(t), "run", SocketName)
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{srv: NewServer(opts), sock: sock, bus: opts.Bus, served: make(chan error, 1)}
	go func() { d.served <- d.srv.Serve(l) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-d.served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
	d.served <- ErrServerClosed // stop is idempotent
}

func TestStatusVersion(t *testing.T) {
	started := time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)
	want := Status{
		Version: "test-1", Started: started, Config: "examples/pap2t.conf", Network: "userspace", SIPAddr: "0.0.0.0:5060",
		Lines:    []status.Line{{Name: "ttyUSB0", Device: "/dev/ttyUSB0", Peer: "pap2t-ispmodem", State: "down", Since: started, LastError: "no such device"}},
		Calls:    []status.Call{{ID: "00000001", From: "pap2t-client", Exten: "88567682", To: "pap2t-ispmodem", State: "up", Start: started}},
		Counters: []Counter{{Name: "sip.auth_failed", Value: 3}},
	}
	d := startDaemon(t, ServerOptions{Version: "test-1", Status: func(context.Context) Status { return want }})
	sub := d.bus.Subscribe("watcher", 4, nil)
	defer sub.Close()
	d.bus.Publish(bus.Notice{Source: "test", Text: "one"})

	c := NewClient(d.sock)
	got, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The server fills the bus part from its bus.
	want.Bus = BusStats{Published: 1, Subscribers: []bus.SubStats{{Name: "watcher", Delivered: 1, Queued: 1}}}
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})); d != "" {
		t.Errorf("Status (-want +got):\n%s", d)
	}
	v, err := c.Version(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "test-1" || v.PID != os.Getpid() || v.Go == "" {
		t.Errorf("Version = %+v", v)
	}
	if _, err := Dial(t.Context(), d.sock); err != nil {
		t.Errorf("Dial: %v", err)
	}
}

func TestNotFound(t *testing.T) {
	d := startDaemon(t, ServerOptions{})
	c := NewClient(d.sock)
	err := c.getJSON(t.Context(), "/v1/nothing", new(any))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Msg != "404 page not found" {
		t.Errorf("GET /v1/nothing: %v", err)
	}
	// A write endpoint asked with the wrong method.
	if err := c.getJSON(t.Context(), "/v1/reload", new(any)); !errors.As(err, &ae) || ae.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/reload: %v", err)
	}
}

func TestReload(t *testing.T) {
	tests := []struct {
		name    string
		reload  func(context.Context) error
		deny    bool
		wantErr string
	}{
		{"ok", func(context.Context) error { return nil }, false, ""},
		{"refused", func(context.Context) error {
			return errors.New("examples/bad.conf:3: unknown key \"secert\" in peer [x]")
		}, false, "examples/bad.conf:3: unknown key \"secert\" in peer [x]"},
		{"not supported", nil, false, "this daemon cannot reload"},
		{"forbidden", func(context.Context) error { t.Error("reload ran for a forbidden user"); return nil }, true,
			fmt.Sprintf("uid %d may not /v1/reload: only root and uid %d may", os.Geteuid(), os.Geteuid())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			var reload func(context.Context) error
			if tt.reload != nil {
				reload = func(ctx context.Context) error { calls++; return tt.reload(ctx) }
			}
			d := startDaemon(t, ServerOptions{Reload: reload})
			if tt.deny {
				d.srv.writeOK = func(Cred, bool) bool { return false }
			}
			err := NewClient(d.sock).Reload(t.Context())
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("Reload error = %q, want %q", got, tt.wantErr)
			}
			if tt.reload != nil && !tt.deny && calls != 1 {
				t.Errorf("reload called %d times", calls)
			}
		})
	}
}

func TestMayWrite(t *testing.T) {
	tests := []struct {
		cred   Cred
		known  bool
		daemon int
		want   bool
	}{
		{Cred{UID: 0}, true, 1000, true},
		{Cred{UID: 1000}, true, 1000, true},
		{Cred{UID: 1001}, true, 1000, false},
		{Cred{UID: 0}, false, 1000, false}, // no credentials: read-only
		{Cred{UID: 0}, true, 0, true},
		{Cred{UID: 1000}, true, 0, false},
	}
	for _, tt := range tests {
		if got := mayWrite(tt.cred, tt.known, tt.daemon); got != tt.want {
			t.Errorf("mayWrite(%+v, %v, %d) = %v, want %v", tt.cred, tt.known, tt.daemon, got, tt.want)
		}
	}
}

// TestPeerCred checks that a handler sees the kernel's view of the client.
func TestPeerCred(t *testing.T) {
	d := startDaemon(t, ServerOptions{Handlers: map[string]Route{
		"GET /v1/whoami": {Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := PeerCred(r.Context())
			if !ok {
				writeError(w, 500, "no credentials")
				return
			}
			writeJSON(w, c)
		})},
	}})
	var c Cred
	if err := NewClient(d.sock).getJSON(t.Context(), "/v1/whoami", &c); err != nil {
		t.Fatal(err)
	}
	if want := (Cred{UID: os.Geteuid(), GID: os.Getegid(), PID: os.Getpid()}); c != want {
		t.Errorf("PeerCred = %+v, want %+v", c, want)
	}
}

// waitSubscribers polls the bus until it has n subscribers whose name
// starts with prefix. Subscriptions are made by the server's goroutine, and
// the bus is the only place that shows it.
func waitSubscribers(t *testing.T, b *bus.Bus, prefix string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, subs := b.Stats()
		k := 0
		for _, s := range subs {
			if strings.HasPrefix(s.Name, prefix) {
				k++
			}
		}
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers %q, want %d", k, prefix, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEventStream(t *testing.T) {
	d := startDaemon(t, ServerOptions{})
	c := NewClient(d.sock)
	ctx, cancel := context.WithCancel(t.Context())
	lines := make(chan EventLine, 10)
	done := make(chan error, 1)
	go func() {
		done <- c.EventStream(ctx, []string{"call.", "box."}, func(l EventLine) error { lines <- l; return nil })
	}()
	waitSubscribers(t, d.bus, "console pid ", 1)
	d.bus.Publish(bus.LineState{Line: "ttyUSB0", State: "idle"}) // filtered out
	d.bus.Publish(bus.CallRinging{CallID: "00000001", Callee: "pap2t-ispmodem"})
	d.bus.Publish(bus.Notice{Source: "box", Text: "config reloaded"})
	want := []EventLine{
		{Seq: 2, Kind: "call.ringing", Text: "SIP/pap2t-ispmodem is ringing (call 00000001)",
			Data: json.RawMessage(`{"CallID":"00000001","Callee":"pap2t-ispmodem"}`)},
		{Seq: 3, Kind: "box.notice", Text: "box: config reloaded", Data: json.RawMessage(`{"Source":"box","Text":"config reloaded"}`)},
	}
	for i, w := range want {
		select {
		case got := <-lines:
			if got.Time.IsZero() {
				t.Errorf("line %d has no time", i)
			}
			got.Time = time.Time{}
			if d := cmp.Diff(w, got); d != "" {
				t.Errorf("line %d (-want +got):\n%s", i, d)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("line %d not received", i)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("EventStream after cancel: %v", err)
	}
	waitSubscribers(t, d.bus, "console", 0) // the handler closed its subscription
}

// TestShutdownEndsStreams: Shutdown must not wait for event streams,
// which never go idle, and the client must hear that the stream ended.
func TestShutdownEndsStreams(t *testing.T) {
	d := startDaemon(t, ServerOptions{})
	done := make(chan error, 1)
	go func() {
		done <- NewClient(d.sock).EventStream(t.Context(), nil, func(EventLine) error { return nil })
	}()
	waitSubscribers(t, d.bus, "console", 1)
	d.stop(t)
	select {
	case err := <-done:
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("stream ended with %v, want unexpected EOF", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("stream still open after Shutdown")
	}
	if _, subs := d.bus.Stats(); len(subs) != 0 {
		t.Errorf("subscriptions left: %+v", subs)
	}
}

// blockingWriter is a ResponseWriter whose Write blocks until released,
// standing for a console that reads too slowly.
type blockingWriter struct {
	hdr     http.Header
	mu      sync.Mutex
	buf     strings.Builder
	started chan struct{} // closed at WriteHeader: the handler has subscribed
	entered chan struct{} // one value per Write
	release chan struct{}
}

func (w *blockingWriter) Header() http.Header { return w.hdr }
func (w *blockingWriter) WriteHeader(int)     { close(w.started) }
func (w *blockingWriter) Flush()              {}
func (w *blockingWriter) Write(p []byte) (int, error) {
	w.entered <- struct{}{}
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// TestEventsDropMarker makes the stream's subscription overflow at a known
// point and checks that the stream says how many events it lost, where.
func TestEventsDropMarker(t *testing.T) {
	b := bus.New(nil)
	s := NewServer(ServerOptions{Bus: b, EventBuffer: 1})
	w := &blockingWriter{hdr: http.Header{}, started: make(chan struct{}), entered: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/v1/events", nil)
	done := make(chan struct{})
	go func() { defer close(done); s.serveEvents(w, req) }()
	<-w.started
	b.Publish(bus.Notice{Text: "1"})
	<-w.entered // the handler is stuck writing event 1
	for i := 2; i <= 6; i++ {
		b.Publish(bus.Notice{Text: fmt.Sprint(i)}) // 2 fits the buffer, 3..6 are lost
	}
	close(w.release)
	<-w.entered // the drop marker
	<-w.entered // event 2
	cancel()
	<-done
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(w.buf.String()), "\n") {
		var el EventLine
		if err := json.Unmarshal([]byte(l), &el); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("seq=%d dropped=%d text=%q", el.Seq, el.Dropped, el.Text))
	}
	want := []string{`seq=1 dropped=0 text=": 1"`, `seq=0 dropped=4 text=""`, `seq=2 dropped=0 text=": 2"`}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("stream (-want +got):\n%s", d)
	}
}

func TestNoDaemon(t *testing.T) {
	dir := testutil.ShortDir(t)
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	missing := filepath.Join(dir, "missing.sock")
	tests := []struct {
		sock string
		want string
	}{
		{missing, "no daemon at " + missing + `: no such file or directory (is "isp-box serve" running?)`},
		{stale, "no daemon at " + stale + `: connection refused (is "isp-box serve" running?)`},
	}
	for _, tt := range tests {
		c := NewClient(tt.sock)
		_, err := c.Status(t.Context())
		var nd *NoDaemonError
		if !errors.As(err, &nd) || err.Error() != tt.want {
			t.Errorf("Status on %s: %v, want %q", tt.sock, err, tt.want)
		}
		if _, err := Dial(t.Context(), tt.sock); err == nil || err.Error() != tt.want {
			t.Errorf("Dial %s: %v", tt.sock, err)
		}
		if err := c.Events(t.Context(), new(strings.Builder)); err == nil || err.Error() != tt.want {
			t.Errorf("Events %s: %v", tt.sock, err)
		}
	}
}

func TestHistory(t *testing.T) {
	rec := bus.CallEnded{CallID: "00000001", From: "a", To: "1", Start: time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC), Status: "ANSWER", SIPCode: 200}
	var gotLimit int
	d := startDaemon(t, ServerOptions{History: func(_ context.Context, limit int) (History, error) {
		gotLimit = limit
		return History{Calls: []bus.CallEnded{rec}}, nil
	}})
	c := NewClient(d.sock)
	tests := []struct {
		limit, want int
	}{
		{0, DefaultHistory}, {5, 5}, {MaxHistory, MaxHistory},
	}
	for _, tt := range tests {
		h, err := c.History(t.Context(), tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if gotLimit != tt.want {
			t.Errorf("History(%d) asked the store for %d, want %d", tt.limit, gotLimit, tt.want)
		}
		if d := cmp.Diff(History{Calls: []bus.CallEnded{rec}, Sessions: []bus.PPPDown{}}, h); d != "" {
			t.Errorf("History (-want +got):\n%s", d)
		}
	}
	var ae *APIError
	if _, err := c.History(t.Context(), MaxHistory+1); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("History(MaxHistory+1): %v", err)
	}
	d2 := startDaemon(t, ServerOptions{})
	if _, err := NewClient(d2.sock).History(t.Context(), 0); err == nil || err.Error() != "this daemon keeps no records" {
		t.Errorf("History without a store: %v", err)
	}
}

// POST /v1/unban is a write route: SO_PEERCRED decides, like reload.
func TestUnban(t *testing.T) {
	banned := map[netip.Addr]bool{netip.MustParseAddr("192.0.2.9"): true}
	unban := func(_ context.Context, a netip.Addr) bool {
		was := banned[a]
		delete(banned, a)
		return was
	}
	tests := []struct {
		name    string
		addr    string
		deny    bool
		want    UnbanResult
		wantErr string
	}{
		{"lifted", "192.0.2.9", false, UnbanResult{Addr: "192.0.2.9", Lifted: true}, ""},
		{"not banned", "192.0.2.9", false, UnbanResult{Addr: "192.0.2.9"}, ""},
		{"not an address", "example.com", false, UnbanResult{}, `addr "example.com": want an IP address`},
		{"forbidden", "192.0.2.10", true, UnbanResult{},
			fmt.Sprintf("uid %d may not /v1/unban: only root and uid %d may", os.Geteuid(), os.Geteuid())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startDaemon(t, ServerOptions{Unban: unban})
			if tt.deny {
				banned[netip.MustParseAddr(tt.addr)] = true
				d.srv.writeOK = func(Cred, bool) bool { return false }
			}
			got, err := NewClient(d.sock).Unban(t.Context(), tt.addr)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tt.wantErr || got != tt.want {
				t.Errorf("Unban(%s) = %+v, %q; want %+v, %q", tt.addr, got, gotErr, tt.want, tt.wantErr)
			}
			if tt.deny && !banned[netip.MustParseAddr(tt.addr)] {
				t.Error("a forbidden caller lifted a ban")
			}
		})
	}
}

// TestEventStreamCap: event streams are bounded (each costs a subscription,
// a connection and goroutines); one past the limit is refused with a
// message saying so, the status still answers, and a closed stream makes
// room again.
func TestEventStreamCap(t *testing.T) {
	const limit = 32 // the default
	d := startDaemon(t, ServerOptions{})
	c := NewClient(d.sock)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mem0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&mem0)
	done := make(chan error, limit+1)
	cancels := make([]context.CancelFunc, limit)
	for i := range limit {
		sctx, scancel := context.WithCancel(ctx)
		cancels[i] = scancel
		go func() { done <- c.EventStream(sctx, nil, func(EventLine) error { return nil }) }()
	}
	waitSubscribers(t, d.bus, "console", limit)
	var mem1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&mem1)
	t.Logf("%d streams: +%.0f KB heap+stacks (client and server sides)", limit,
		float64(int64(mem1.HeapInuse+mem1.StackInuse)-int64(mem0.HeapInuse+mem0.StackInuse))/1e3)
	err := c.EventStream(ctx, nil, func(EventLine) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "too many event streams: 32 are open, the limit is 32") {
		t.Fatalf("stream %d: %v, want refused", limit+1, err)
	}
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("status with the streams open: %v", err)
	}
	cancels[0]()
	if err := <-done; err != nil {
		t.Fatalf("closed stream: %v", err)
	}
	waitSubscribers(t, d.bus, "console", limit-1)
	go func() { done <- c.EventStream(ctx, nil, func(EventLine) error { return nil }) }()
	waitSubscribers(t, d.bus, "console", limit)
}

// TestProfiling: /debug/pprof/ exists only when asked for, and only for
// root and the daemon's uid.
func TestProfiling(t *testing.T) {
	get := func(t *testing.T, d *daemon, path string) (int, string) {
		t.Helper()
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.sock)
		}}}
		resp, err := hc.Get("http://isp-box" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	off := startDaemon(t, ServerOptions{})
	if code, _ := get(t, off, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("profiling off: GET /debug/pprof/ = %d, want 404", code)
	}
	on := startDaemon(t, ServerOptions{Profiling: true})
	if code, body := get(t, on, "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("profiling on: GET goroutine = %d %.80q", code, body)
	}
	if code, body := get(t, on, "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "mutex") {
		t.Errorf("profiling on: GET index = %d %.80q", code, body)
	}
	on.srv.writeOK = func(Cred, bool) bool { return false }
	if code, _ := get(t, on, "/debug/pprof/heap"); code != http.StatusForbidden {
		t.Errorf("profiling for another uid: %d, want 403", code)
	}
}
