// Package console is the control socket of isp-box and the text renderers
// of its CLI.
//
// The daemon serves HTTP with JSON bodies on a unix socket (see Listen and
// DefaultSocketPath). The API is versioned under /v1:
//
//	GET  /v1/status   the Status JSON (one document, shared with the CLI)
//	GET  /v1/events   live bus events, one JSON EventLine per line (NDJSON)
//	GET  /v1/version  a VersionInfo
//	GET  /v1/history  the newest call and PPP session records (?limit=N)
//	POST /v1/reload   re-read the config (write access)
//	POST /v1/unban    lift the ban on a SIP source (?addr=IP; write access)
//
// Anyone who can open the socket (mode 0660: the daemon's user and group)
// may read. Write endpoints also need the peer's uid, from SO_PEERCRED, to
// be root or the daemon's own uid. Errors are {"error": "..."} with a
// 4xx/5xx status.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof" // also registers on http.DefaultServeMux, which nothing here serves
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Route is one endpoint of the control socket.
type Route struct {
	// Write marks an endpoint that changes the daemon: only root and the
	// daemon's own uid may call it.
	Write   bool
	Handler http.Handler
}

// ServerOptions configures a Server. Every field may be left zero.
type ServerOptions struct {
	// Socket is the control socket Run listens on ("" = DefaultSocketPath).
	Socket string
	// Status returns the daemon's current status. The server fills Bus
	// (from Bus below) and Version when the function leaves them empty.
	Status func(ctx context.Context) Status
	// Bus is the event bus streamed by /v1/events and described in
	// Status.Bus.
	Bus *bus.Bus
	// Reload re-reads and applies the config; its error is shown to the
	// caller of `isp-box reload`. Nil answers 501.
	Reload func(ctx context.Context) error
	// History returns the newest limit call and session records, newest
	// first (the store's Calls and Sessions). Nil answers 501.
	History func(ctx context.Context, limit int) (History, error)
	// Unban lifts the ban on a SIP source address; false if it was not
	// banned. Nil answers 501.
	Unban func(ctx context.Context, addr netip.Addr) bool
	// Version is the daemon's version string.
	Version string
	// Log receives request errors; nil discards.
	Log *slog.Logger
	// Handlers adds or replaces routes, keyed by "METHOD /v1/path" as in
	// http.ServeMux patterns, e.g. "POST /v1/hangup".
	Handlers map[string]Route
	// Profiling serves Go's profiles (net/http/pprof: CPU, heap,
	// goroutine, block, mutex, trace) under /debug/pprof/, to root and the
	// daemon's uid only: a profile shows the daemon's memory. Off unless
	// the daemon was started with ISPBOX_PPROF=1.
	Profiling bool
	// EventBuffer is the size of each /v1/events subscription (default
	// 256). A console that falls further behind loses events and is told.
	EventBuffer int
	// MaxEventStreams bounds the /v1/events streams open at once (default
	// 32); each holds a subscription, a connection and two goroutines, and
	// 3,000 of them once cost 110 MB. One more is refused with 503.
	MaxEventStreams int
}

// Server serves the control API. Create it with NewServer.
type Server struct {
	opts    ServerOptions
	log     *slog.Logger
	hs      *http.Server
	uid     int // the daemon's uid: allowed to write besides root
	writeOK func(cred Cred, known bool) bool
	started time.Time

	quit     chan struct{} // closed at Shutdown/Close: ends event streams
	quitOnce sync.Once
	ready    chan struct{} // closed once Run listens

	streams      atomic.Int32 // /v1/events streams open
	streamsShown atomic.Int64 // unix seconds of the last "too many" log line
}

// NewServer returns a server for opts; it does not listen yet.
func NewServer(opts ServerOptions) *Server {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 256
	}
	if opts.MaxEventStreams <= 0 {
		opts.MaxEventStreams = 32
	}
	s := &Server{opts: opts, log: log.With("comp", "console"), uid: os.Geteuid(),
		started: time.Now(), quit: make(chan struct{}), ready: make(chan struct{})}
	s.writeOK = func(c Cred, known bool) bool { return mayWrite(c, known, s.uid) }
	s.hs = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cred, ok := peerCred(c); ok {
				return context.WithValue(ctx, credKey{}, cred)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// http.Server.Shutdown waits for connections to go idle; an event
	// stream never does, so it is told to end here.
	s.hs.RegisterOnShutdown(s.stopStreams)
	return s
}

// shutdownGrace bounds how long Run waits for requests in flight at stop.
const shutdownGrace = 2 * time.Second

// Run listens on opts.Socket (see Listen), closes Ready, and serves until
// ctx is done; then it shuts down (requests in flight get shutdownGrace),
// removes the socket file and returns nil. A socket that cannot be created
// is Run's error, before Ready.
func (s *Server) Run(ctx context.Context) error {
	path := s.opts.Socket
	if path == "" {
		path = DefaultSocketPath()
	}
	l, err := Listen(path)
	if err != nil {
		return err
	}
	close(s.ready)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	select {
	case err = <-served:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		s.Shutdown(sctx)
		cancel()
		err = <-served
	}
	os.Remove(path)
	if errors.Is(err, ErrServerClosed) {
		return nil
	}
	return err
}

// Ready is closed once Run listens on the socket.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Serve accepts connections on l until Shutdown or Close. Like
// http.Server.Serve it always returns a non-nil error, ErrServerClosed after
// Shutdown or Close, and closes l.
func (s *Server) Serve(l net.Listener) error { return s.hs.Serve(l) }

// Shutdown stops accepting, ends event streams, and waits for requests in
// flight to finish or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error { return s.hs.Shutdown(ctx) }

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.stopStreams()
	return s.hs.Close()
}

func (s *Server) stopStreams() { s.quitOnce.Do(func() { close(s.quit) }) }

// Cred is the identity of a connected client, from SO_PEERCRED.
type Cred struct {
	UID, GID, PID int
}

type credKey struct{}

// PeerCred returns the credentials of the client of a request's context,
// if the connection is a unix socket on Linux.
func PeerCred(ctx context.Context) (Cred, bool) {
	c, ok := ctx.Value(credKey{}).(Cred)
	return c, ok
}

// mayWrite is the rule for write endpoints: root, or the daemon's uid.
func mayWrite(cred Cred, known bool, daemonUID int) bool {
	return known && (cred.UID == 0 || cred.UID == daemonUID)
}

// routes is the handler table; ServerOptions.Handlers is merged over it.
func (s *Server) routes() map[string]Route {
	r := map[string]Route{
		"GET /v1/status":  {Handler: http.HandlerFunc(s.serveStatus)},
		"GET /v1/events":  {Handler: http.HandlerFunc(s.serveEvents)},
		"GET /v1/version": {Handler: http.HandlerFunc(s.serveVersion)},
		"GET /v1/history": {Handler: http.HandlerFunc(s.serveHistory)},
		"POST /v1/reload": {Write: true, Handler: http.HandlerFunc(s.serveReload)},
		"POST /v1/unban":  {Write: true, Handler: http.HandlerFunc(s.serveUnban)},
	}
	if s.opts.Profiling {
		r["GET /debug/pprof/"] = Route{Write: true, Handler: http.HandlerFunc(pprof.Index)}
		r["GET /debug/pprof/cmdline"] = Route{Write: true, Handler: http.HandlerFunc(pprof.Cmdline)}
		r["GET /debug/pprof/profile"] = Route{Write: true, Handler: http.HandlerFunc(pprof.Profile)}
		r["GET /debug/pprof/symbol"] = Route{Write: true, Handler: http.HandlerFunc(pprof.Symbol)}
		r["GET /debug/pprof/trace"] = Route{Write: true, Handler: http.HandlerFunc(pprof.Trace)}
	}
	for k, v := range s.opts.Handlers {
		r[k] = v
	}
	return r
}

// Handler returns the routed API, permission checks included.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for pattern, rt := range s.routes() {
		h := rt.Handler
		if rt.Write {
			next := h
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				cred, ok := PeerCred(r.Context())
				if !s.writeOK(cred, ok) {
					who := "unknown user"
					if ok {
						who = fmt.Sprintf("uid %d", cred.UID)
					}
					writeError(w, http.StatusForbidden, fmt.Sprintf("%s may not %s: only root and uid %d may", who, r.URL.Path, s.uid))
					return
				}
				next.ServeHTTP(w, r)
			})
		}
		mux.Handle(pattern, h)
	}
	// Unknown paths and methods get ServeMux's own 404 and 405 (with an
	// Allow header); a catch-all route here would turn every 405 into 404.
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(apiError{Error: msg})
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	var st Status
	if s.opts.Status != nil {
		st = s.opts.Status(r.Context())
	}
	if st.Version == "" {
		st.Version = s.opts.Version
	}
	if st.Started.IsZero() {
		st.Started = s.started
	}
	if s.opts.Bus != nil && st.Bus.Published == 0 && st.Bus.Subscribers == nil {
		st.Bus = BusStatsOf(s.opts.Bus)
	}
	writeJSON(w, st)
}

// BusStatsOf snapshots b for Status.Bus, subscribers sorted by name.
func BusStatsOf(b *bus.Bus) BusStats {
	pub, subs := b.Stats()
	sortSubs(subs)
	return BusStats{Published: pub, Subscribers: subs}
}

// VersionInfo is the answer of GET /v1/version.
type VersionInfo struct {
	Version string    `json:"version"`
	Go      string    `json:"go"`
	OS      string    `json:"os"`
	Arch    string    `json:"arch"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

func (s *Server) serveVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, VersionInfo{Version: s.opts.Version, Go: runtime.Version(), OS: runtime.GOOS,
		Arch: runtime.GOARCH, PID: os.Getpid(), Started: s.started})
}

// History is the answer of GET /v1/history: the records the store keeps.
type History struct {
	Calls    []bus.CallEnded `json:"calls"`    // newest first
	Sessions []bus.PPPDown   `json:"sessions"` // newest first
}

// Limits of GET /v1/history's limit parameter.
const (
	DefaultHistory = 20
	MaxHistory     = 10000
)

func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request) {
	if s.opts.History == nil {
		writeError(w, http.StatusNotImplemented, "this daemon keeps no records")
		return
	}
	limit := DefaultHistory
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxHistory {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a number from 1 to %d", v, MaxHistory))
			return
		}
		limit = n
	}
	h, err := s.opts.History(r.Context(), limit)
	if err != nil {
		s.log.Warn("history", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if h.Calls == nil {
		h.Calls = []bus.CallEnded{}
	}
	if h.Sessions == nil {
		h.Sessions = []bus.PPPDown{}
	}
	writeJSON(w, h)
}

func (s *Server) serveReload(w http.ResponseWriter, r *http.Request) {
	if s.opts.Reload == nil {
		writeError(w, http.StatusNotImplemented, "this daemon cannot reload")
		return
	}
	if err := s.opts.Reload(r.Context()); err != nil {
		s.log.Warn("reload refused", "err", err)
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, struct {
		OK bool `json:"ok"`
	}{true})
}

func (s *Server) serveUnban(w http.ResponseWriter, r *http.Request) {
	if s.opts.Unban == nil {
		writeError(w, http.StatusNotImplemented, "this daemon bans nothing")
		return
	}
	v := r.URL.Query().Get("addr")
	a, err := netip.ParseAddr(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("addr %q: want an IP address", v))
		return
	}
	lifted := s.opts.Unban(r.Context(), a)
	if lifted {
		cred, _ := PeerCred(r.Context())
		s.log.Info("ban lifted", "addr", a, "uid", cred.UID)
	}
	writeJSON(w, UnbanResult{Addr: a.String(), Lifted: lifted})
}

// streamWriteTimeout is how long one write of the event stream may block
// before the stream is given up.
const streamWriteTimeout = 30 * time.Second

// EventLine is one line of the /v1/events stream. A line with Dropped > 0
// carries no event: it says how many events this stream lost since the
// previous line because the reader was too slow.
type EventLine struct {
	Seq     uint64          `json:"seq,omitempty"`
	Time    time.Time       `json:"time"`
	Kind    string          `json:"kind,omitempty"`
	Text    string          `json:"text,omitempty"` // the event's String()
	Data    json.RawMessage `json:"data,omitempty"` // the event's fields
	Dropped uint64          `json:"dropped,omitempty"`
}

// serveEvents streams the bus from a lossy subscription: a slow console
// never slows the box down, it is told what it missed instead. The query
// parameter kind=prefix[,prefix...] keeps only events whose Kind starts with
// one of the prefixes ("call.", "line.state").
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	if s.opts.Bus == nil {
		writeError(w, http.StatusServiceUnavailable, "no event bus")
		return
	}
	if n := int(s.streams.Add(1)); n > s.opts.MaxEventStreams {
		s.streams.Add(-1)
		msg := fmt.Sprintf("too many event streams: %d are open, the limit is %d; close a console (isp-box events) first", n-1, s.opts.MaxEventStreams)
		if now := time.Now().Unix(); s.streamsShown.Swap(now) < now-10 {
			s.log.Warn("event stream refused: " + msg)
		}
		writeError(w, http.StatusServiceUnavailable, msg)
		return
	}
	defer s.streams.Add(-1)
	var filter func(bus.Event) bool
	if k := r.URL.Query().Get("kind"); k != "" {
		prefixes := strings.Split(k, ",")
		filter = func(ev bus.Event) bool {
			for _, p := range prefixes {
				if strings.HasPrefix(ev.Kind(), p) {
					return true
				}
			}
			return false
		}
	}
	name := "console"
	if cred, ok := PeerCred(r.Context()); ok {
		name = fmt.Sprintf("console pid %d", cred.PID)
	}
	sub := s.opts.Bus.Subscribe(name, s.opts.EventBuffer, filter)
	defer sub.Close()

	rc := http.NewResponseController(w)
	// A client that stops reading would block a write for ever, and with
	// it Shutdown: each write must finish within streamWriteTimeout.
	deadline := func() { rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)) }
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	deadline()
	if err := rc.Flush(); err != nil { // the client sees the stream open before the first event
		return
	}

	enc := json.NewEncoder(w)
	var reported uint64
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		case env, ok := <-sub.C():
			if !ok {
				return
			}
			deadline()
			if d := sub.Dropped(); d > reported {
				if enc.Encode(EventLine{Time: env.Time, Dropped: d - reported}) != nil {
					return
				}
				reported = d
			}
			line := EventLine{Seq: env.Seq, Time: env.Time, Kind: env.Event.Kind(), Text: eventText(env.Event)}
			if data, err := json.Marshal(env.Event); err == nil {
				line.Data = data
			}
			if err := enc.Encode(line); err != nil {
				return // the client went away
			}
			// Flush only when nothing else is waiting, so a burst goes out
			// in few writes.
			if len(sub.C()) == 0 && rc.Flush() != nil {
				return
			}
		}
	}
}

func eventText(ev bus.Event) string {
	if s, ok := ev.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%+v", ev)
}
