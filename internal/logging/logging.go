// Package logging builds isp-box's slog handlers. Its one idea: the handler
// that writes is always open to debug records, and the level is a filter in
// front of it that a part can lower for itself. That is how mgetty's
// `debug 9` on one port and pppd's `debug` in options.ttyS0 turn on debug
// logging for that line alone while the rest of the box logs at its level.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

// Options say how records are written.
type Options struct {
	Level slog.Leveler // the box's level; nil = info
	// NoTime leaves out the time stamp: journald stamps every line itself.
	NoTime bool
}

// New returns a text logger on w.
func New(w io.Writer, o Options) *slog.Logger {
	ho := &slog.HandlerOptions{Level: slog.LevelDebug}
	if o.NoTime {
		ho.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	min := o.Level
	if min == nil {
		min = slog.LevelInfo
	}
	return slog.New(&filter{min: min, next: slog.NewTextHandler(w, ho)})
}

// filter passes records at or above min to next.
type filter struct {
	min  slog.Leveler
	next slog.Handler
}

func (f *filter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min.Level() && f.next.Enabled(ctx, l)
}

func (f *filter) Handle(ctx context.Context, r slog.Record) error { return f.next.Handle(ctx, r) }

func (f *filter) WithAttrs(as []slog.Attr) slog.Handler {
	return &filter{min: f.min, next: f.next.WithAttrs(as)}
}

func (f *filter) WithGroup(name string) slog.Handler {
	return &filter{min: f.min, next: f.next.WithGroup(name)}
}

// Debug returns log with debug records let through when on, for one part
// whose config asks for it. A logger not made by New is returned as it is:
// its own level stands.
func Debug(log *slog.Logger, on bool) *slog.Logger {
	f, ok := log.Handler().(*filter)
	if !on || !ok {
		return log
	}
	return slog.New(&filter{min: slog.LevelDebug, next: f.next})
}

// Error logs err under msg, one record per line of its text: a config with
// three problems is three log lines, each readable on its own in journald.
func Error(log *slog.Logger, msg string, err error) {
	for _, line := range strings.Split(strings.TrimRight(err.Error(), "\n"), "\n") {
		log.Error(msg, "err", line)
	}
}
