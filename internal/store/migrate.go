package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] takes the schema from version i to version i+1. Append
// only: a released step is never edited, since databases in the field have
// already run it. Each step runs in one transaction with the new
// user_version.
var migrations = []string{
	// 1: the three record tables.
	`CREATE TABLE registrations (
		peer       TEXT PRIMARY KEY,
		aor        TEXT NOT NULL,
		contact    TEXT NOT NULL,
		addr       TEXT NOT NULL DEFAULT '',
		user_agent TEXT NOT NULL DEFAULT '',
		expires    TEXT,
		updated    TEXT
	);
	CREATE TABLE calls (
		id         INTEGER PRIMARY KEY,
		call_id    TEXT NOT NULL,
		sip_id     TEXT NOT NULL DEFAULT '',
		from_peer  TEXT NOT NULL DEFAULT '',
		exten      TEXT NOT NULL DEFAULT '',
		callee     TEXT NOT NULL DEFAULT '',
		start      TEXT,
		answer     TEXT,
		end        TEXT,
		status     TEXT NOT NULL DEFAULT '',
		sip_code   INTEGER NOT NULL DEFAULT 0,
		hangup_by  TEXT NOT NULL DEFAULT '',
		media_mode TEXT NOT NULL DEFAULT '',
		codec      TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE ppp_sessions (
		id         INTEGER PRIMARY KEY,
		session    TEXT NOT NULL,
		line       TEXT NOT NULL DEFAULT '',
		user       TEXT NOT NULL DEFAULT '',
		remote     TEXT NOT NULL DEFAULT '',
		start      TEXT,
		end        TEXT,
		bytes_in   INTEGER NOT NULL DEFAULT 0,
		bytes_out  INTEGER NOT NULL DEFAULT 0,
		pkts_in    INTEGER NOT NULL DEFAULT 0,
		pkts_out   INTEGER NOT NULL DEFAULT 0,
		cause      TEXT NOT NULL DEFAULT '',
		call_id    TEXT NOT NULL DEFAULT ''
	);`,
	// 2: the lists are read newest first, and accounting by user.
	`CREATE INDEX calls_end ON calls (end);
	CREATE INDEX ppp_sessions_end ON ppp_sessions (end);
	CREATE INDEX ppp_sessions_user ON ppp_sessions (user, end);`,
	// 3: what the registrar needs to take a binding back after a restart:
	// the Contact's user, the REGISTER's Call-ID and CSeq (RFC 3261
	// §10.3 step 7 orders refreshes by them) and whether the peer is
	// behind NAT.
	`ALTER TABLE registrations ADD COLUMN username TEXT NOT NULL DEFAULT '';
	ALTER TABLE registrations ADD COLUMN call_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE registrations ADD COLUMN cseq INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE registrations ADD COLUMN nat INTEGER NOT NULL DEFAULT 0;`,
	// 4: RADIUS accounting requests not yet acknowledged by a server
	// (RFC 2866 §2: the NAS retries until one answers), oldest first,
	// kept across restarts of the box and outages of the servers.
	`CREATE TABLE acct_queue (
		id       INTEGER PRIMARY KEY,
		session  TEXT NOT NULL,
		status   TEXT NOT NULL DEFAULT '',
		packet   BLOB NOT NULL,
		created  TEXT NOT NULL,
		tries    INTEGER NOT NULL DEFAULT 0,
		last_err TEXT NOT NULL DEFAULT ''
	);`,
	// 5: records written when a call or session starts (live = 1) and
	// completed when it ends, so that a kill -9 leaves a trace of what was
	// up; the next start marks what is still live as interrupted.
	`ALTER TABLE calls ADD COLUMN live INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE ppp_sessions ADD COLUMN live INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX calls_live ON calls (call_id) WHERE live = 1;
	CREATE INDEX ppp_sessions_live ON ppp_sessions (session) WHERE live = 1;`,
	// 6: who called, for a PPP session: a TCP line's client address or
	// the SIP caller of a modem call.
	`ALTER TABLE ppp_sessions ADD COLUMN caller_id TEXT NOT NULL DEFAULT '';`,
}

// SchemaVersion is the schema version this isp-box writes.
var SchemaVersion = len(migrations)

func userVersion(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read user_version: %w", err)
	}
	return v, nil
}

// migrate applies the steps the database lacks, one transaction per step.
// The version is read inside the transaction, which holds the write lock
// (BEGIN IMMEDIATE), so two processes opening a new file at once do not
// both run a step.
func migrate(ctx context.Context, db *sql.DB) error {
	return migrateTo(ctx, db, len(migrations))
}

func migrateTo(ctx context.Context, db *sql.DB, target int) error {
	for {
		done, err := migrateStep(ctx, db, target)
		if err != nil || done {
			return err
		}
	}
}

func migrateStep(ctx context.Context, db *sql.DB, target int) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	v, err := userVersion(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	switch {
	case v > len(migrations):
		return false, fmt.Errorf("%w: file has version %d, this program knows up to %d", ErrNewerSchema, v, len(migrations))
	case v >= target:
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrate %d -> %d: %w", v, v+1, err)
	}
	// PRAGMA takes no bound parameters; v+1 is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return false, fmt.Errorf("migrate %d -> %d: %w", v, v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate %d -> %d: commit: %w", v, v+1, err)
	}
	return false, nil
}
