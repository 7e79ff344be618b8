package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// AcctRecord is a queued accounting request: what the RADIUS client
// encoded (its attributes), for the session it belongs to.
type AcctRecord struct {
	ID      int64
	Session string
	Status  string // start, interim, stop
	Packet  []byte
	Created time.Time // when the event happened: Acct-Delay-Time counts from it
	Tries   int
	LastErr string
}

// QueueAcct keeps rec until DeleteAcct; it returns the record's id.
func (s *Store) QueueAcct(ctx context.Context, rec AcctRecord) (int64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO acct_queue (session, status, packet, created) VALUES (?, ?, ?, ?)`,
		rec.Session, rec.Status, rec.Packet, encTime(rec.Created))
	if err != nil {
		return 0, fmt.Errorf("store: queue accounting: %w", err)
	}
	return res.LastInsertId()
}

// PendingAcct returns up to limit queued records, oldest first.
func (s *Store) PendingAcct(ctx context.Context, limit int) ([]AcctRecord, error) {
	return queryAll(ctx, s.db, "accounting queue", scanAcct,
		`SELECT id, session, status, packet, created, tries, last_err FROM acct_queue ORDER BY id LIMIT ?`, limit)
}

func scanAcct(rows *sql.Rows) (r AcctRecord, err error) {
	var created string
	if err := rows.Scan(&r.ID, &r.Session, &r.Status, &r.Packet, &created, &r.Tries, &r.LastErr); err != nil {
		return r, fmt.Errorf("store: accounting queue: %w", err)
	}
	if r.Created, err = time.Parse(timeFormat, created); err != nil {
		return r, fmt.Errorf("store: accounting queue: record %d: %w", r.ID, err)
	}
	return r, nil
}

// AcctFailed counts a failed try of record id.
func (s *Store) AcctFailed(ctx context.Context, id int64, why string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE acct_queue SET tries = tries + 1, last_err = ? WHERE id = ?`, why, id)
	return err
}

// DeleteAcct drops a record a server acknowledged.
func (s *Store) DeleteAcct(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM acct_queue WHERE id = ?`, id)
	return err
}
