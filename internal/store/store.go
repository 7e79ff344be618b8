// Package store keeps what isp-box must remember across restarts in one
// SQLite file: SIP registrations, call records and PPP session (accounting)
// records.
//
// The driver is modernc.org/sqlite, a pure-Go SQLite, so the binary stays
// cgo-free for every target.
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL. In WAL mode a commit
// appends the transaction's pages to the -wal file with write(2) before
// COMMIT returns, so once a commit has returned the data is in the kernel's
// page cache: a kill -9 of isp-box at any moment cannot lose it, and SQLite
// ignores a torn, uncommitted tail of the WAL on the next open. That much
// holds with synchronous=NORMAL too. What NORMAL gives up is the fsync of the
// WAL at each commit, so a power cut or kernel crash may roll back the last
// commits (never corrupt the file). The records kept here are what an ISP
// bills from and a Raspberry Pi on a wall plug loses power, while the write
// rate is tiny (one record per call or session, batched by Run), so FULL
// costs nothing that matters and closes that gap.
//
// # Schema
//
// The schema is versioned in code: migrations[i] takes the database from
// version i to i+1, each step in its own transaction together with the new
// PRAGMA user_version, so a crash during an upgrade leaves the old version.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/isp-box/isp-box/internal/bus"
)

// busyTimeout is how long a connection waits for another writer's lock
// before failing with SQLITE_BUSY. Only isp-box writes, so this covers an
// operator running sqlite3 on the file at the same time.
const busyTimeout = 10 * time.Second

// Store is an open database. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string

	// Log receives write failures of Run. Set it before Run; nil discards.
	Log *slog.Logger
	// Bus carries the call and session events Run records. Set it before Run.
	Bus *bus.Bus

	ready chan struct{} // closed once Run has subscribed to Bus
}

// Registration is one SIP binding as the registrar keeps it: the peer's
// address of record, the Contact it registered and where it came from.
type Registration struct {
	Peer      string         // peer name (section name in the config); the key
	AOR       string         // address of record, e.g. "sip:pap2t-client@box"
	Contact   string         // Contact URI as registered
	Addr      netip.AddrPort // source address of the REGISTER
	Username  string         // the Contact's user part
	UserAgent string
	CallID    string    // Call-ID of the REGISTER
	CSeq      uint32    // CSeq number of the REGISTER
	NAT       bool      // the peer is behind NAT (Via differed from the source)
	Expires   time.Time // when the binding lapses
	Updated   time.Time // when it was saved; SaveRegistration sets it if zero
}

// ErrNewerSchema is returned by Open for a database written by a newer
// isp-box than this one.
var ErrNewerSchema = errors.New("store: database schema is newer than this isp-box")

// DefaultPath is where the database lives when neither the config nor
// --db says: /var/lib/isp-box for root, the XDG state directory otherwise.
func DefaultPath() string {
	// systemd's StateDirectory= (the packaged unit: /var/lib/isp-box).
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" {
		return filepath.Join(d, "isp-box.db")
	}
	if os.Geteuid() == 0 {
		return "/var/lib/isp-box/isp-box.db"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "isp-box", "isp-box.db")
	}
	// Service users often have a HOME that does not exist (Debian's
	// nobody: /nonexistent); creating state under it would fail at start.
	if h, err := os.UserHomeDir(); err == nil {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() {
			return filepath.Join(h, ".local", "state", "isp-box", "isp-box.db")
		}
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("isp-box-%d", os.Geteuid()), "isp-box.db")
}

// dsn builds the driver's connection string. The pragmas are applied by
// the driver to every new connection, which matters because synchronous
// and busy_timeout are per connection. _txlock=immediate makes every
// transaction take the write lock at BEGIN, so two writers queue on
// busy_timeout instead of failing on lock upgrade.
func dsn(path string) string {
	q := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()),
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)",
		"_txlock=immediate",
	}
	return "file:" + path + "?" + strings.Join(q, "&")
}

// FileMode is the permission of a database file that Open creates.
const FileMode = 0o640

// Memory is the path of a database that lives in memory only, for tests
// and the demo: nothing survives Close.
const Memory = ":memory:"

// Open opens (creating if needed) the database at path, checks that it is
// in WAL mode and brings its schema to the current version. The directory
// is created with mode 0750 if missing. path may be Memory.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: database path %q must not contain '?' or '#'", path)
	}
	if path != Memory {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		// The records name users and addresses: create the file 0640
		// rather than SQLite's 0644. SQLite gives -wal and -shm the
		// mode of the database file.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
		if err == nil {
			f.Close()
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// One connection: SQLite has one writer at a time anyway, and with
	// several connections a burst of writers (a thousand lines registering
	// at once, each commit an fsync) queues inside SQLite on busy_timeout
	// and fails with SQLITE_BUSY; here they queue in database/sql instead,
	// bounded by their contexts. For :memory: it is also what keeps one
	// database (every connection to :memory: is a database of its own).
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: path, ready: make(chan struct{})}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") && s.path != Memory {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	return migrate(ctx, s.db)
}

// Close closes the database. Committed data is already on disk; Close only
// checkpoints the WAL into the main file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Version is the schema version of the open database.
func (s *Store) Version(ctx context.Context) (int, error) {
	return userVersion(ctx, s.db)
}

// ---- time and address encoding ----

// Times are stored as RFC 3339 text in UTC with nanoseconds, which sorts as
// text and reads well in the sqlite3 shell. The zero time is NULL.

const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func encTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(timeFormat)
}

func decTime(v sql.NullString) (time.Time, error) {
	if !v.Valid || v.String == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, v.String)
}

func encAddrPort(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func decAddrPort(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	return netip.ParseAddrPort(s)
}

func encAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func decAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	return netip.ParseAddr(s)
}

// ---- registrations ----

// SaveRegistration inserts or replaces the binding of r.Peer.
func (s *Store) SaveRegistration(ctx context.Context, r Registration) error {
	if r.Peer == "" {
		return errors.New("store: registration without a peer")
	}
	if r.Updated.IsZero() {
		r.Updated = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO registrations
		(peer, aor, contact, addr, username, user_agent, call_id, cseq, nat, expires, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (peer) DO UPDATE SET aor = excluded.aor, contact = excluded.contact,
		addr = excluded.addr, username = excluded.username, user_agent = excluded.user_agent,
		call_id = excluded.call_id, cseq = excluded.cseq, nat = excluded.nat,
		expires = excluded.expires, updated = excluded.updated`,
		r.Peer, r.AOR, r.Contact, encAddrPort(r.Addr), r.Username, r.UserAgent, r.CallID, int64(r.CSeq), r.NAT,
		encTime(r.Expires), encTime(r.Updated))
	if err != nil {
		return fmt.Errorf("store: save registration %s: %w", r.Peer, err)
	}
	return nil
}

// DeleteRegistration removes the binding of peer. Removing a binding that
// does not exist is not an error.
func (s *Store) DeleteRegistration(ctx context.Context, peer string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM registrations WHERE peer = ?`, peer); err != nil {
		return fmt.Errorf("store: delete registration %s: %w", peer, err)
	}
	return nil
}

// Registrations returns every saved binding, sorted by peer, expired ones
// included: the registrar decides what an expired binding means.
func (s *Store) Registrations(ctx context.Context) ([]Registration, error) {
	return queryAll(ctx, s.db, "registrations", scanRegistration, `SELECT peer, aor, contact, addr, username,
		user_agent, call_id, cseq, nat, expires, updated FROM registrations ORDER BY peer`)
}

func scanRegistration(rows *sql.Rows) (r Registration, err error) {
	var addr string
	var exp, upd sql.NullString
	var cseq int64
	if err := rows.Scan(&r.Peer, &r.AOR, &r.Contact, &addr, &r.Username, &r.UserAgent, &r.CallID, &cseq, &r.NAT,
		&exp, &upd); err != nil {
		return r, fmt.Errorf("store: registrations: %w", err)
	}
	r.CSeq = uint32(cseq)
	if r.Addr, err = decAddrPort(addr); err != nil {
		return r, fmt.Errorf("store: registration %s: addr: %w", r.Peer, err)
	}
	if r.Expires, err = decTime(exp); err != nil {
		return r, fmt.Errorf("store: registration %s: expires: %w", r.Peer, err)
	}
	if r.Updated, err = decTime(upd); err != nil {
		return r, fmt.Errorf("store: registration %s: updated: %w", r.Peer, err)
	}
	return r, nil
}

// queryAll runs a SELECT and decodes each row with scan, which wraps its
// own errors. what names the query in the others ("store: what: ...").
func queryAll[T any](ctx context.Context, db *sql.DB, what string, scan func(*sql.Rows) (T, error),
	query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

// ---- call and session records ----

// execer is what the insert helpers need: a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertCall(ctx context.Context, x execer, c bus.CallEnded) error {
	_, err := x.ExecContext(ctx, `INSERT INTO calls
		(call_id, sip_id, from_peer, exten, callee, start, answer, end, status, sip_code, hangup_by, media_mode, codec)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.CallID, c.SIPID, c.From, c.To, c.Callee, encTime(c.Start), encTime(c.Answer), encTime(c.End),
		c.Status, c.SIPCode, c.HangupBy, c.MediaMode, c.Codec)
	if err != nil {
		return fmt.Errorf("store: save call %s: %w", c.CallID, err)
	}
	return nil
}

func insertSession(ctx context.Context, x execer, p bus.PPPDown) error {
	// uint64 counters are stored as int64: SQLite integers are signed, and
	// 2^63 bytes over a modem is not a case.
	_, err := x.ExecContext(ctx, `INSERT INTO ppp_sessions
		(session, line, user, remote, start, end, bytes_in, bytes_out, pkts_in, pkts_out, cause, call_id, caller_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.Session, p.Line, p.User, encAddr(p.Remote), encTime(p.Start), encTime(p.End),
		int64(p.BytesIn), int64(p.BytesOut), int64(p.PktsIn), int64(p.PktsOut), p.Cause, p.CallID, p.CallerID)
	if err != nil {
		return fmt.Errorf("store: save session %s: %w", p.Session, err)
	}
	return nil
}

// SaveCall commits one call record. When it returns nil the record survives
// a crash of the process (and, with synchronous=FULL, of the machine).
func (s *Store) SaveCall(ctx context.Context, c bus.CallEnded) error {
	return insertCall(ctx, s.db, c)
}

// SaveSession commits one PPP session record, like SaveCall.
func (s *Store) SaveSession(ctx context.Context, p bus.PPPDown) error {
	return insertSession(ctx, s.db, p)
}

// Calls returns up to limit call records: live ones (StatusLive) first,
// then newest first (by end time).
// limit <= 0 means all.
func (s *Store) Calls(ctx context.Context, limit int) ([]bus.CallEnded, error) {
	if limit <= 0 {
		limit = -1
	}
	return queryAll(ctx, s.db, "calls", scanCall, `SELECT call_id, sip_id, from_peer, exten, callee, start, answer, end,
		status, sip_code, hangup_by, media_mode, codec FROM calls ORDER BY live DESC, end DESC, id DESC LIMIT ?`, limit)
}

func scanCall(rows *sql.Rows) (c bus.CallEnded, err error) {
	var start, answer, end sql.NullString
	if err := rows.Scan(&c.CallID, &c.SIPID, &c.From, &c.To, &c.Callee, &start, &answer, &end,
		&c.Status, &c.SIPCode, &c.HangupBy, &c.MediaMode, &c.Codec); err != nil {
		return c, fmt.Errorf("store: calls: %w", err)
	}
	if err := decTimes(&c.Start, start, &c.Answer, answer, &c.End, end); err != nil {
		return c, fmt.Errorf("store: call %s: %w", c.CallID, err)
	}
	return c, nil
}

// Sessions returns up to limit PPP session records, newest first (by end
// time). limit <= 0 means all.
func (s *Store) Sessions(ctx context.Context, limit int) ([]bus.PPPDown, error) {
	if limit <= 0 {
		limit = -1
	}
	return queryAll(ctx, s.db, "sessions", scanSession, `SELECT session, line, user, remote, start, end, bytes_in, bytes_out,
		pkts_in, pkts_out, cause, call_id, caller_id FROM ppp_sessions ORDER BY live DESC, end DESC, id DESC LIMIT ?`, limit)
}

func scanSession(rows *sql.Rows) (p bus.PPPDown, err error) {
	var remote string
	var start, end sql.NullString
	var bin, bout, pin, pout int64
	if err := rows.Scan(&p.Session, &p.Line, &p.User, &remote, &start, &end, &bin, &bout,
		&pin, &pout, &p.Cause, &p.CallID, &p.CallerID); err != nil {
		return p, fmt.Errorf("store: sessions: %w", err)
	}
	p.BytesIn, p.BytesOut, p.PktsIn, p.PktsOut = uint64(bin), uint64(bout), uint64(pin), uint64(pout)
	if p.Remote, err = decAddr(remote); err != nil {
		return p, fmt.Errorf("store: session %s: remote: %w", p.Session, err)
	}
	if err := decTimes(&p.Start, start, &p.End, end); err != nil {
		return p, fmt.Errorf("store: session %s: %w", p.Session, err)
	}
	return p, nil
}

// decTimes decodes pairs of (*time.Time, sql.NullString).
func decTimes(pairs ...any) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		t, err := decTime(pairs[i+1].(sql.NullString))
		if err != nil {
			return err
		}
		*pairs[i].(*time.Time) = t
	}
	return nil
}

func (s *Store) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s.Log
}
