// Package web is the box's read-only status page: peers, lines, calls and
// PPP sessions from the same console.Status the CLI renders (GET /status
// is that JSON), and the bus's events as server-sent events (GET /events,
// the HTML living standard's text/event-stream) so the page changes as
// soon as something happens. No framework: one HTML file with a little
// JavaScript, usable on a phone.
package web

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/console"
)

//go:embed index.html
var index []byte

// Register adds the page's routes to mux. Streams end when done closes
// (the box stopping), so the server's Shutdown is not held by them.
func Register(mux *http.ServeMux, status func() console.Status, b *bus.Bus, done <-chan struct{}) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'")
		w.Write(index)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(status())
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		// One name for every open page: the metrics are per name.
		sub := b.Subscribe("web", 256, nil)
		defer sub.Close()
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, ": isp-box events\n\n")
		if rc.Flush() != nil {
			return
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case <-done:
				return
			case env, ok := <-sub.C():
				if !ok {
					return
				}
				text := fmt.Sprintf("%+v", env.Event)
				if s, ok := env.Event.(fmt.Stringer); ok {
					text = s.String()
				}
				line, _ := json.Marshal(console.EventLine{Seq: env.Seq, Time: env.Time, Kind: env.Event.Kind(), Text: text})
				// A reader that stops reading must not block the box.
				rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(w, "data: %s\n\n", line); err != nil || rc.Flush() != nil {
					return
				}
			}
		}
	})
}
