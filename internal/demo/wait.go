package demo

import (
	"context"
	"path/filepath"
)

// DatabasePath is the box's SQLite file: read it with store.Open after
// Close to see the call and session records the box wrote.
func (w *World) DatabasePath() string { return filepath.Join(w.Dir, "isp-box.db") }

// WaitPeersOK waits (up to 30 s) until every qualified SIP peer answers
// OPTIONS in time, so that calls to it are routed.
func (w *World) WaitPeersOK(ctx context.Context) error { return waitPeersOK(ctx, w) }

// WaitLinesIdle waits (up to 60 s) until every modem line is idle and the
// box has no PPP session and no call.
func (w *World) WaitLinesIdle(ctx context.Context) error { return waitLinesIdle(ctx, w) }

// WaitReady waits until the world can take calls: every ATA line
// registered, every qualified peer reachable, every modem line idle.
func (w *World) WaitReady(ctx context.Context) error {
	if err := w.WaitRegistered(ctx); err != nil {
		return err
	}
	if err := w.WaitPeersOK(ctx); err != nil {
		return err
	}
	return w.WaitLinesIdle(ctx)
}
