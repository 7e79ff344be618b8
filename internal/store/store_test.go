package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/isp-box/isp-box/internal/bus"
)

var t0 = time.Date(2026, 11, 27, 15, 4, 5, 123456789, time.UTC)

// netipEqual lets cmp compare the netip types, whose fields are unexported.
var netipEqual = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "sub", "isp-box.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func call(i int) bus.CallEnded {
	start := t0.Add(time.Duration(i) * time.Minute)
	return bus.CallEnded{
		CallID: fmt.Sprintf("%08d", i), SIPID: fmt.Sprintf("abc%d@10.0.0.2", i),
		From: "pap2t-client", To: "88567682", Callee: "pap2t-ispmodem",
		Start: start, Answer: start.Add(3 * time.Second), End: start.Add(30 * time.Second),
		Status: "ANSWER", SIPCode: 200, HangupBy: "caller", MediaMode: "direct", Codec: "PCMU",
	}
}

func session(i int) bus.PPPDown {
	start := t0.Add(time.Duration(i) * time.Minute)
	return bus.PPPDown{
		Session: fmt.Sprintf("ppp%d", i), Line: "ttyUSB0", User: "dial",
		Remote: netip.MustParseAddr("192.168.32.105"), Start: start, End: start.Add(time.Hour),
		BytesIn: 1 << 40, BytesOut: 12345, PktsIn: 10, PktsOut: 20, Cause: "carrier lost", CallID: fmt.Sprintf("%08d", i),
	}
}

func TestOpenPragmas(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	// The pragmas are per connection; the pool holds one (Open sets
	// MaxOpenConns 1), which must have them.
	if got := s.db.Stats().MaxOpenConnections; got != 1 {
		t.Fatalf("MaxOpenConnections %d, want 1", got)
	}
	conns := make([]*sql.Conn, 1)
	for i := range conns {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		var mode string
		var sync, busy int
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || sync != 2 || busy != int(busyTimeout.Milliseconds()) {
			t.Errorf("conn %d: journal_mode=%s synchronous=%d busy_timeout=%d, want wal 2 (FULL) %d",
				i, mode, sync, busy, busyTimeout.Milliseconds())
		}
		c.Close() // give the pool's one connection back
	}
	if v, err := s.Version(ctx); err != nil || v != SchemaVersion {
		t.Errorf("Version = %d, %v; want %d", v, err, SchemaVersion)
	}
}

func TestMemory(t *testing.T) {
	s, err := Open(t.Context(), Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := bus.New(nil)
	ctx, cancel := context.WithCancel(t.Context())
	wait := s.Start(ctx, b)
	for i := range 10 {
		b.Publish(call(i))
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if calls, err := s.Calls(t.Context(), 0); err != nil || len(calls) != 10 {
		t.Errorf("Calls = %d, %v; want 10", len(calls), err)
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db", "isp-box.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCall(t.Context(), call(1)); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != FileMode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), os.FileMode(FileMode))
		}
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v, want 0750", fi.Mode().Perm())
	}
}

func TestOpenErrors(t *testing.T) {
	for _, p := range []string{"", "/tmp/a?b.db", "/tmp/a#b.db"} {
		if _, err := Open(t.Context(), p); err == nil {
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// TestMigrateFromEachVersion builds a database at every older schema
// version, with a record in each table that exists at that version, and
// checks that Open upgrades it to the current version keeping the records.
func TestMigrateFromEachVersion(t *testing.T) {
	for from := 0; from <= len(migrations); from++ {
		t.Run(fmt.Sprintf("from %d", from), func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "old.db")
			db, err := sql.Open("sqlite", dsn(path))
			if err != nil {
				t.Fatal(err)
			}
			if err := migrateTo(ctx, db, from); err != nil {
				t.Fatal(err)
			}
			if v, _ := userVersion(ctx, db); v != from {
				t.Fatalf("prepared version %d, want %d", v, from)
			}
			old := &Store{db: db}
			if from >= 1 {
				if err := old.SaveCall(ctx, call(1)); err != nil {
					t.Fatal(err)
				}
				// A session as versions before 6 wrote it, without
				// the caller ID.
				p := session(1)
				if _, err := db.ExecContext(ctx, `INSERT INTO ppp_sessions
					(session, line, user, remote, start, end, bytes_in, bytes_out, pkts_in, pkts_out, cause, call_id)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					p.Session, p.Line, p.User, encAddr(p.Remote), encTime(p.Start), encTime(p.End),
					int64(p.BytesIn), int64(p.BytesOut), int64(p.PktsIn), int64(p.PktsOut), p.Cause, p.CallID); err != nil {
					t.Fatal(err)
				}
				// Registrations as version 1 wrote them, before the
				// columns of version 3.
				if _, err := db.ExecContext(ctx, `INSERT INTO registrations (peer, aor, contact, addr, user_agent, expires, updated)
					VALUES ('p', 'sip:p@box', 'sip:p@10.0.0.2', '10.0.0.2:5060', 'ua', ?, ?)`, encTime(t0), encTime(t0)); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()

			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if v, err := s.Version(ctx); err != nil || v != len(migrations) {
				t.Fatalf("version after Open = %d, %v; want %d", v, err, len(migrations))
			}
			calls, err := s.Calls(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			sessions, err := s.Sessions(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			regs, err := s.Registrations(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if from >= 1 {
				want = 1
			}
			if len(calls) != want || len(sessions) != want || len(regs) != want {
				t.Errorf("after upgrade: %d calls, %d sessions, %d registrations; want %d each", len(calls), len(sessions), len(regs), want)
			}
			if want == 1 {
				wantReg := Registration{Peer: "p", AOR: "sip:p@box", Contact: "sip:p@10.0.0.2", Addr: netip.MustParseAddrPort("10.0.0.2:5060"),
					UserAgent: "ua", Expires: t0, Updated: t0}
				if d := cmp.Diff(wantReg, regs[0], netipEqual); d != "" {
					t.Errorf("registration after upgrade (-want +got):\n%s", d)
				}
				if d := cmp.Diff(call(1), calls[0]); d != "" {
					t.Errorf("call after upgrade (-want +got):\n%s", d)
				}
				if d := cmp.Diff(session(1), sessions[0], netipEqual); d != "" {
					t.Errorf("session after upgrade (-want +got):\n%s", d)
				}
			}
			// The current schema works: new records go in.
			if err := s.SaveCall(ctx, call(2)); err != nil {
				t.Error(err)
			}
			p := session(2)
			p.CallerID = "198.51.100.7:40001"
			if err := s.SaveSession(ctx, p); err != nil {
				t.Error(err)
			}
			if got, err := s.Sessions(ctx, 1); err != nil || len(got) != 1 || got[0].CallerID != p.CallerID {
				t.Errorf("new session record %+v, %v; want caller %s", got, err, p.CallerID)
			}
			var idx int
			if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'ppp_sessions_user'").Scan(&idx); err != nil || idx != 1 {
				t.Errorf("index ppp_sessions_user: %d, %v", idx, err)
			}
		})
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "new.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, path); !errors.Is(err, ErrNewerSchema) {
		t.Errorf("Open of a newer database: %v, want ErrNewerSchema", err)
	}
}

func TestRegistrations(t *testing.T) {
	client := Registration{Peer: "pap2t-client", AOR: "sip:pap2t-client@192.168.1.2", Contact: "sip:pap2t-client@192.168.1.50:5061",
		Addr: netip.MustParseAddrPort("192.168.1.50:5061"), Username: "pap2t-client", UserAgent: "Linksys/PAP2T-5.1.6(LS)",
		CallID: "a1b2c3@192.168.1.50", CSeq: 4294967295, NAT: true, Expires: t0.Add(time.Hour), Updated: t0}
	modem := client
	modem.Peer, modem.AOR, modem.Contact = "pap2t-ispmodem", "sip:pap2t-ispmodem@192.168.1.2", "sip:pap2t-ispmodem@192.168.1.50:5060"
	modem.Addr = netip.MustParseAddrPort("192.168.1.50:5060")
	moved := client
	moved.Addr, moved.Contact, moved.Expires = netip.MustParseAddrPort("[2001:db8::5]:5062"), "sip:pap2t-client@[2001:db8::5]:5062", t0.Add(2*time.Hour)
	moved.CSeq, moved.NAT = 5, false
	bare := Registration{Peer: "bare", AOR: "sip:bare@box", Contact: "sip:bare@x"}

	type op struct {
		save *Registration
		del  string
	}
	tests := []struct {
		name string
		ops  []op
		want []Registration
	}{
		{"empty", nil, nil},
		{"two sorted", []op{{save: &modem}, {save: &client}}, []Registration{client, modem}},
		{"refresh replaces", []op{{save: &client}, {save: &moved}}, []Registration{moved}},
		{"delete", []op{{save: &client}, {save: &modem}, {del: "pap2t-client"}}, []Registration{modem}},
		{"delete missing", []op{{del: "nobody"}}, nil},
		{"zero fields", []op{{save: &bare}}, []Registration{bare}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			ctx := t.Context()
			for _, o := range tt.ops {
				var err error
				if o.save != nil {
					err = s.SaveRegistration(ctx, *o.save)
				} else {
					err = s.DeleteRegistration(ctx, o.del)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Registrations(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Updated is set on save when zero; compare it only when given.
			for i := range got {
				if i < len(tt.want) && tt.want[i].Updated.IsZero() {
					if got[i].Updated.IsZero() {
						t.Errorf("%s: Updated not set", got[i].Peer)
					}
					got[i].Updated = time.Time{}
				}
			}
			if d := cmp.Diff(tt.want, got, netipEqual); d != "" {
				t.Errorf("Registrations (-want +got):\n%s", d)
			}
		})
	}
	s := openTest(t)
	if err := s.SaveRegistration(t.Context(), Registration{}); err == nil {
		t.Error("saving a registration without peer succeeded")
	}
}

func TestCallsAndSessions(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	unanswered := call(3)
	unanswered.Answer, unanswered.Status, unanswered.SIPCode, unanswered.HangupBy = time.Time{}, "NOANSWER", 480, "box"
	noRemote := session(3)
	noRemote.Remote = netip.Addr{}
	for _, c := range []bus.CallEnded{call(1), call(2), unanswered} {
		if err := s.SaveCall(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []bus.PPPDown{session(1), session(2), noRemote} {
		if err := s.SaveSession(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		limit    int
		calls    []bus.CallEnded
		sessions []bus.PPPDown
	}{
		{0, []bus.CallEnded{unanswered, call(2), call(1)}, []bus.PPPDown{noRemote, session(2), session(1)}},
		{2, []bus.CallEnded{unanswered, call(2)}, []bus.PPPDown{noRemote, session(2)}},
		{-1, []bus.CallEnded{unanswered, call(2), call(1)}, []bus.PPPDown{noRemote, session(2), session(1)}},
	}
	for _, tt := range tests {
		calls, err := s.Calls(ctx, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.calls, calls, netipEqual); d != "" {
			t.Errorf("Calls(%d) (-want +got):\n%s", tt.limit, d)
		}
		sessions, err := s.Sessions(ctx, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.sessions, sessions, netipEqual); d != "" {
			t.Errorf("Sessions(%d) (-want +got):\n%s", tt.limit, d)
		}
	}
}

// TestRunDrainsOnShutdown publishes a burst and cancels at once: every
// record must be committed by the time Run returns, through the drain.
func TestRunDrainsOnShutdown(t *testing.T) {
	for _, n := range []int{0, 1, 2000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := openTest(t)
			b := bus.New(nil)
			ctx, cancel := context.WithCancel(t.Context())
			wait := s.Start(ctx, b)
			for i := range n {
				b.Publish(call(i))
				b.Publish(bus.Notice{Source: "test", Text: "ignored"})
				b.Publish(session(i))
			}
			cancel()
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			calls, err := s.Calls(t.Context(), 0)
			if err != nil {
				t.Fatal(err)
			}
			sessions, err := s.Sessions(t.Context(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) != n || len(sessions) != n {
				t.Fatalf("committed %d calls and %d sessions, want %d each", len(calls), len(sessions), n)
			}
			seen := map[string]bool{}
			for _, c := range calls {
				seen[c.CallID] = true
			}
			for i := range n {
				if !seen[fmt.Sprintf("%08d", i)] {
					t.Fatalf("call %d missing", i)
				}
			}
			if _, subs := b.Stats(); len(subs) != 0 {
				t.Errorf("subscription left after Run: %+v", subs)
			}
		})
	}
}

// TestRunWhileLive checks records are written while Run is running, not
// only at shutdown.
func TestRunWhileLive(t *testing.T) {
	s := openTest(t)
	b := bus.New(nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := s.Start(ctx, b)
	b.Publish(call(7))
	deadline := time.Now().Add(60 * time.Second)
	for {
		calls, err := s.Calls(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("call record not written within 60 s")
		}
		time.Sleep(10 * time.Millisecond) // polling the database, not synchronising goroutines
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSaveCall: one transaction (one fsync) per record.
func BenchmarkSaveCall(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n := 0
	for b.Loop() {
		if err := s.SaveCall(b.Context(), call(n)); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRun: records published on the bus and committed by Run in
// batches, measured until the last one is committed.
func BenchmarkRun(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	bs := bus.New(nil)
	ctx, cancel := context.WithCancel(b.Context())
	wait := s.Start(ctx, bs)
	start := time.Now()
	for i := range b.N {
		bs.Publish(call(i))
	}
	cancel()
	if err := wait(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
