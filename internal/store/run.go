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
	// gatherWindow is how long Run collects records after the first one
	// before it commits them together. Committing as each record came
	// meant a commit (and an fsync, synchronous=FULL) per record at a
	// steady call rate: 31 % of the box's CPU at 300 calls/s, 2.27 ms of
	// CPU per call; gathering for 50 ms took that to 1.33 ms (perf3's
	// profile, PERFORMANCE.md). A kill -9 may lose the records of the
	// last window; an orderly stop commits them.
	gatherWindow = 50 * time.Millisecond
)

// keep selects the events Run writes. Registrations are not among them:
// the registrar saves bindings synchronously through SaveRegistration.
func keep(ev bus.Event) bool {
	switch ev.(type) {
	case bus.CallStarted, bus.CallEnded, bus.PPPUp, bus.PPPDown:
		return true
	}
	return false
}

// Run writes a record for every call and PPP session published on s.Bus
// until ctx is done: a live one at CallStarted / PPPUp, completed at
// CallEnded / PPPDown. Before it subscribes it marks the records a previous
// run left live (killed, or the machine lost power) as interrupted; then
// Ready is closed. Its subscription is reliable, so no record is dropped
// however slow the disk; what arrives within gatherWindow of the first
// record is committed with it in one transaction. A failed write is logged and retried with the same records.
// When ctx is done Run drains what is still queued, commits it, and returns
// nil, or the error of that last commit. The database stays open: Close
// closes it.
func (s *Store) Run(ctx context.Context) error {
	if s.Bus == nil {
		return errors.New("store: Run without a Bus")
	}
	s.interrupted(ctx)
	sub := s.Bus.SubscribeReliable("store", keep)
	close(s.ready)
	return s.run(ctx, sub)
}

// Ready is closed once Run has subscribed: events published from then on
// are recorded.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// Start runs Run on b in a goroutine of its own and returns once it is
// ready. wait blocks until Run has returned (after ctx is done and the
// final commit) and returns its error.
func (s *Store) Start(ctx context.Context, b *bus.Bus) (wait func() error) {
	s.Bus = b
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var err error
	var once sync.Once
	wait = func() error {
		once.Do(func() { err = <-done })
		return err
	}
	select {
	case <-s.ready:
	case err := <-done:
		done <- err // for wait
	}
	return wait
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
			// Take what else comes within the window, to commit it all at
			// once. ctx ending cuts it short: the final flush takes them.
			window := time.NewTimer(gatherWindow)
		more:
			for len(pending) < maxBatch {
				select {
				case env, ok := <-sub.C():
					if !ok {
						break more
					}
					pending = append(pending, env)
				case <-window.C:
					break more
				case <-ctx.Done():
					break more
				}
			}
			window.Stop()
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
		case bus.CallStarted:
			err = startCall(ctx, tx, ev, env.Time)
		case bus.CallEnded:
			err = endCall(ctx, tx, ev)
		case bus.PPPUp:
			err = startSession(ctx, tx, ev, env.Time)
		case bus.PPPDown:
			err = endSession(ctx, tx, ev)
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Status and cause of the records a run left live.
const (
	StatusLive        = "LIVE"        // a call record whose call has not ended yet
	StatusInterrupted = "INTERRUPTED" // the box stopped without ending the call
	CauseInterrupted  = "interrupted" // the same for a PPP session
)

func startCall(ctx context.Context, x execer, c bus.CallStarted, at time.Time) error {
	_, err := x.ExecContext(ctx, `INSERT INTO calls (call_id, sip_id, from_peer, exten, callee, start, status, live)
		VALUES (?, ?, ?, ?, ?, ?, ?, 1)`, c.CallID, c.SIPID, c.From, c.Exten, c.Target, encTime(at), StatusLive)
	if err != nil {
		return fmt.Errorf("store: start call %s: %w", c.CallID, err)
	}
	return nil
}

// endCall completes the live record of the call, or writes the whole
// record when there is none (the call started before Run subscribed).
func endCall(ctx context.Context, x execer, c bus.CallEnded) error {
	res, err := x.ExecContext(ctx, `UPDATE calls SET sip_id = ?, from_peer = ?, exten = ?, callee = ?, start = ?,
		answer = ?, end = ?, status = ?, sip_code = ?, hangup_by = ?, media_mode = ?, codec = ?, live = 0
		WHERE call_id = ? AND live = 1`,
		c.SIPID, c.From, c.To, c.Callee, encTime(c.Start), encTime(c.Answer), encTime(c.End),
		c.Status, c.SIPCode, c.HangupBy, c.MediaMode, c.Codec, c.CallID)
	if err != nil {
		return fmt.Errorf("store: end call %s: %w", c.CallID, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	return insertCall(ctx, x, c)
}

func startSession(ctx context.Context, x execer, p bus.PPPUp, at time.Time) error {
	_, err := x.ExecContext(ctx, `INSERT INTO ppp_sessions (session, line, user, remote, start, call_id, caller_id, live)
		VALUES (?, ?, ?, ?, ?, ?, ?, 1)`, p.Session, p.Line, p.User, encAddr(p.Remote), encTime(at), p.CallID, p.CallerID)
	if err != nil {
		return fmt.Errorf("store: start session %s: %w", p.Session, err)
	}
	return nil
}

func endSession(ctx context.Context, x execer, p bus.PPPDown) error {
	res, err := x.ExecContext(ctx, `UPDATE ppp_sessions SET line = ?, user = ?, remote = ?, start = ?, end = ?,
		bytes_in = ?, bytes_out = ?, pkts_in = ?, pkts_out = ?, cause = ?, call_id = ?, caller_id = ?, live = 0
		WHERE session = ? AND live = 1`,
		p.Line, p.User, encAddr(p.Remote), encTime(p.Start), encTime(p.End),
		int64(p.BytesIn), int64(p.BytesOut), int64(p.PktsIn), int64(p.PktsOut), p.Cause, p.CallID, p.CallerID, p.Session)
	if err != nil {
		return fmt.Errorf("store: end session %s: %w", p.Session, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	return insertSession(ctx, x, p)
}

// interrupted closes the records a previous run left live: their end is
// unknown, so it is set to now, when the box found out, and the status says
// so. Call ids restart with each run; closing the old live rows first keeps
// endCall from completing one of them.
func (s *Store) interrupted(ctx context.Context) {
	now := encTime(time.Now())
	res, err := s.db.ExecContext(ctx, `UPDATE calls SET status = ?, hangup_by = 'box', end = ?, live = 0 WHERE live = 1`,
		StatusInterrupted, now)
	if err != nil {
		s.log().Error("marking interrupted calls", "err", err)
		return
	}
	calls, _ := res.RowsAffected()
	res, err = s.db.ExecContext(ctx, `UPDATE ppp_sessions SET cause = ?, end = ?, live = 0 WHERE live = 1`, CauseInterrupted, now)
	if err != nil {
		s.log().Error("marking interrupted sessions", "err", err)
		return
	}
	sessions, _ := res.RowsAffected()
	if calls+sessions > 0 {
		s.log().Warn("records of calls and sessions that were up when the box last stopped are marked interrupted",
			"calls", calls, "sessions", sessions)
	}
}
