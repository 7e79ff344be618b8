package pbx

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// A flood of requests must not become a flood of log lines (a brute force
// once wrote 35,559 WARN lines in 20 s). floodHandler passes at most
// logBurst records with one message per logWindow; the rest are counted,
// and the next record after the window says how many of which message
// were left out. Debug records pass untouched (they are off unless asked
// for).

const (
	logBurst  = 20
	logWindow = 10 * time.Second
	// logKeys bounds the messages tracked per window; messages are
	// constants of the code, so this is never reached in practice.
	logKeys = 256
)

type floodState struct {
	mu      sync.Mutex
	now     func() time.Time
	start   time.Time
	counts  map[string]int
	dropped map[string]int
	out     slog.Handler // where summaries go
}

// gateHandler hands a record on only when pass says so. Both of pbx's log
// filters (this one and parseFilter) are one: WithAttrs and WithGroup
// keep the gate on the derived handler.
type gateHandler struct {
	slog.Handler
	pass func(context.Context, slog.Record) bool
}

func (h gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.pass(ctx, r) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h gateHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return gateHandler{h.Handler.WithAttrs(a), h.pass}
}

func (h gateHandler) WithGroup(g string) slog.Handler {
	return gateHandler{h.Handler.WithGroup(g), h.pass}
}

func newFloodHandler(h slog.Handler, now func() time.Time) slog.Handler {
	st := &floodState{now: now, counts: map[string]int{}, dropped: map[string]int{}, out: h}
	return gateHandler{h, st.pass}
}

// pass reports whether r goes to the log, and first writes the summary
// of what the last window left out.
func (st *floodState) pass(ctx context.Context, r slog.Record) bool {
	if r.Level < slog.LevelInfo {
		return true
	}
	now := st.now()
	st.mu.Lock()
	var summary map[string]int
	if now.Sub(st.start) >= logWindow || now.Before(st.start) {
		if len(st.dropped) > 0 {
			summary = st.dropped
			st.dropped = map[string]int{}
		}
		clear(st.counts)
		st.start = now
	}
	key := r.Message
	if _, ok := st.counts[key]; !ok && len(st.counts) >= logKeys {
		key = "(other messages)"
	}
	st.counts[key]++
	pass := st.counts[key] <= logBurst
	if !pass {
		st.dropped[key]++
	}
	st.mu.Unlock()
	for msg, n := range summary {
		s := slog.NewRecord(now, slog.LevelWarn, "repeated log lines left out", 0)
		s.AddAttrs(slog.String("message", msg), slog.Int("count", n), slog.Duration("within", logWindow))
		_ = st.out.Handle(ctx, s)
	}
	return pass
}
