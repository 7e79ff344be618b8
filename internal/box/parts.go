package box

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// runner is the one lifecycle every part of the box has: Run holds the
// part up until ctx is done and returns once it has released everything it
// holds; Ready is closed once it serves. Run returning before Ready means
// the part could not start, and its error says why. (pbx.Server,
// store.Store, netstack.Stack and console.Server are runners.)
type runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// part is one step of the box's start: open builds the part from what the
// earlier ones made (an error there stops the box as Run's would); ready,
// when set, runs once the part is ready, to log what it serves.
type part struct {
	name  string
	open  func() (runner, error)
	ready func()
}

// running is a started part.
type running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned, err set
	err    error
}

// parts starts parts in order and stops them in reverse.
type parts struct {
	log     *slog.Logger
	up      []*running
	n       int           // parts started or tried
	exited  chan *running // a part whose Run returned while the box ran
	stopped sync.Once
}

// maxParts bounds the parts of one box: each reports its exit once, and
// never blocks doing so.
const maxParts = 16

func newParts(log *slog.Logger) *parts {
	return &parts{log: log, exited: make(chan *running, maxParts)}
}

// start opens p, runs it, and waits until it is ready. An error names the
// part; the parts started before it are left running (stop stops them).
// When ctx is done first, p is stopped and start returns ctx's error.
func (ps *parts) start(ctx context.Context, p part) error {
	if ps.n++; ps.n > maxParts {
		return fmt.Errorf("box: %s: more than %d parts", p.name, maxParts)
	}
	r, err := p.open()
	if err != nil {
		return partError(p.name, err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	run := &running{name: p.name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = r.Run(rctx)
		if rctx.Err() == nil {
			ps.exited <- run
		}
	}()
	select {
	case <-r.Ready():
	case <-run.done:
		cancel()
		if run.err == nil {
			run.err = errors.New("stopped before it was ready")
		}
		return partError(p.name, run.err)
	case <-ctx.Done():
		ps.stopOne(run)
		return ctx.Err()
	}
	ps.up = append(ps.up, run)
	if p.ready != nil {
		p.ready()
	}
	return nil
}

// partError names the part a start failed in, once: the store's own
// errors already begin with "store: ".
func partError(name string, err error) error {
	if strings.HasPrefix(err.Error(), name+": ") {
		return fmt.Errorf("box: %w", err)
	}
	return fmt.Errorf("box: %s: %w", name, err)
}

// Exited delivers a part whose Run returned while the box was running.
func (ps *parts) Exited() <-chan *running { return ps.exited }

// stop stops the started parts in reverse order of start, each after
// the one started after it has returned from Run.
func (ps *parts) stop() {
	ps.stopped.Do(func() {
		for i := len(ps.up) - 1; i >= 0; i-- {
			ps.stopOne(ps.up[i])
		}
	})
}

func (ps *parts) stopOne(r *running) {
	r.cancel()
	<-r.done
	if r.err != nil && !errors.Is(r.err, context.Canceled) {
		ps.log.Error(r.name+" stopped with an error", "err", r.err)
	}
	ps.log.Debug("stopped", "part", r.name)
}

// ready is a runner's Ready for parts that serve once open returned.
var ready = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// runFunc is a runner that serves from open on: Run is the function.
type runFunc func(ctx context.Context) error

func (f runFunc) Run(ctx context.Context) error { return f(ctx) }
func (runFunc) Ready() <-chan struct{}          { return ready }

// then runs after when r's Run has returned: what the box opened for the
// part and closes after it (the database, the network's context).
type then struct {
	runner
	after func() error
}

func (t then) Run(ctx context.Context) error {
	err := t.runner.Run(ctx)
	return errors.Join(err, t.after())
}
