package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
)

const (
	// maxBatch bounds one transaction of Run: enough to absorb a burst with
	// one fsync, small enough that a transaction stays short.
	maxBatch = 512
	// retryDelay is the wait after a failed write (disk full, file locked
	// by an operator's sqlite3) before Run tries the same batch again.
	retryDelay = 2 * time.Second
	// flushChunk is the transaction size of the final flush at shutdown.
	flushChunk = 4096
)

// keep selects the events Run writes. Registrations are not among them:
// the registrar saves bindings synchronously through SaveRegistration.
func keep(ev bus.Event) bool {
	switch ev.(type) {
	case bus.CallEnded, bus.PPPDown:
		return true
	}
	return false
}

// Run writes every CallEnded and PPPDown published on b until ctx is done.
// Its subscription is reliable, so no record is dropped however slow the
// disk; what arrives together is committed in one transaction. A failed
// write is logged and retried with the same records. When ctx is done Run
// drains what is still queued, commits it, and returns nil, or the error of
// that last commit.
//
// Events published before Run subscribes are not seen; when Run is started
// in a goroutine, use Start instead, which subscribes before it returns.
func (s *Store) Run(ctx context.Context, b *bus.Bus) error {
	return s.run(ctx, b.SubscribeReliable("store", keep))
}

// Start subscribes to b at once, then runs Run's loop in a goroutine of its
// own. wait blocks until that loop has ended (after ctx is done and the
// final commit) and returns what Run would have returned.
func (s *Store) Start(ctx context.Context, b *bus.Bus) (wait func() error) {
	sub := b.SubscribeReliable("store", keep)
	done := make(chan error, 1)
	go func() { done <- s.run(ctx, sub) }()
	var err error
	var once sync.Once
	return func() error {
		once.Do(func() { err = <-done })
		return err
	}
}

func (s *Store) run(ctx context.Context, sub *bus.Sub) error {
	log := s.log()
	var pending []bus.Envelope
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			pending = append(pending, sub.Drain()...)
			// The records must go in even though ctx is done. No deadline:
			// a stuck disk shows as an error from SQLite, and a backlog of
			// any size is committed in chunks, each one durable.
			fctx := context.WithoutCancel(ctx)
			for i := 0; i < len(pending); i += flushChunk {
				chunk := pending[i:min(i+flushChunk, len(pending))]
				if err := s.writeBatch(fctx, chunk); err != nil {
					return fmt.Errorf("store: final commit of %d records: %w", len(pending)-i, err)
				}
			}
			log.Debug("store stopped", "flushed", len(pending))
			return nil
		case <-retry:
			retry = nil
		case env, ok := <-sub.C():
			if !ok {
				return errors.New("store: subscription closed under Run")
			}
			pending = append(pending, env)
			// Take what else is already queued, without waiting.
		more:
			for len(pending) < maxBatch {
				select {
				case env, ok := <-sub.C():
					if !ok {
						break more
					}
					pending = append(pending, env)
				default:
					break more
				}
			}
			if retry != nil {
				continue // a failed batch is waiting for its retry
			}
		}
		if len(pending) == 0 {
			continue
		}
		if err := s.writeBatch(ctx, pending); err != nil {
			if ctx.Err() != nil {
				continue // the final flush will write them
			}
			log.Error("store write failed; will retry", "records", len(pending), "err", err)
			retry = time.After(retryDelay)
			continue
		}
		pending = pending[:0]
	}
}

// writeBatch commits envs in one transaction.
func (s *Store) writeBatch(ctx context.Context, envs []bus.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, env := range envs {
		switch ev := env.Event.(type) {
		case bus.CallEnded:
			err = insertCall(ctx, tx, ev)
		case bus.PPPDown:
			err = insertSession(ctx, tx, ev)
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}
