package box_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/box"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
)

// [box] metrics serves /metrics from the same status as the CLI: the
// seed's two peers (unregistered), a line opening, no calls.
func TestMetricsListener(t *testing.T) {
	cfg := lineConfig(t, "[pap2t-client]\ntype=friend\nhost=dynamic\nsecret=y\n[box]\nmetrics = 127.0.0.1:0\n")
	started := make(chan *box.Box, 1)
	b, err := box.New(cfg, box.Options{Socket: "-", Database: ":memory:", NoSignals: true, Started: func(b *box.Box) { started <- b }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-started:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("box did not start")
	}
	url := "http://" + b.MetricsAddr() + "/metrics"
	if !strings.HasPrefix(b.MetricsAddr(), "127.0.0.1:") {
		t.Fatalf("metrics on %q, want loopback", b.MetricsAddr())
	}
	var body string
	testutil.WaitFor(t, 10*time.Second, "the line's state on /metrics", func() (bool, string) {
		r, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer r.Body.Close()
		bb, _ := io.ReadAll(r.Body)
		body = string(bb)
		// The line is opening before its first attempt has failed and counted.
		return strings.Contains(body, `isp_box_modem_lines{state="opening"} 1`) &&
			strings.Contains(body, `isp_box_modem_line_errors_total{line="ttyUSB0"} 1`), body
	})
	for _, w := range []string{`isp_box_sip_peers{status="unregistered"} 2`, "isp_box_ppp_sessions 0",
		`isp_box_modem_line_errors_total{line="ttyUSB0"} 1`, "go_goroutines"} {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	// The status page on the same listener: the page, its JSON (the
	// CLI's status) and the event stream, which carries a reload at once.
	base := "http://" + b.MetricsAddr()
	r, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(page), `new EventSource("events")`) || !strings.Contains(r.Header.Get("Content-Type"), "text/html") {
		t.Errorf("page: %s %.200s", r.Header.Get("Content-Type"), page)
	}
	r, err = http.Get(base + "/status")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(js), `"name":"pap2t-ispmodem"`) || !strings.Contains(string(js), `"name":"pap2t-client"`) {
		t.Errorf("/status lacks the two peers: %.300s", js)
	}
	ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
	defer ecancel()
	req, _ := http.NewRequestWithContext(ectx, "GET", base+"/events", nil)
	er, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer er.Body.Close()
	if ct := er.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("events content type %q", ct)
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		var acc string
		for {
			n, err := er.Body.Read(buf)
			acc += string(buf[:n])
			if strings.Contains(acc, "data: {") || err != nil {
				got <- acc
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the stream is subscribed
	b.Bus().Publish(bus.Notice{Source: "test", Text: "hello page"})
	select {
	case s := <-got:
		if !strings.Contains(s, "hello page") {
			t.Errorf("event stream: %q", s)
		}
	case <-time.After(time.Second):
		t.Error("no event on the stream within a second")
	}
	if r, err := http.Post(url, "text/plain", nil); err == nil {
		r.Body.Close()
		if r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /metrics: %d, want 405 (read-only)", r.StatusCode)
		}
	}
}
