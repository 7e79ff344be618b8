package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestAcctQueue: records come back oldest first, keep their tries and
// survive closing the database (a restart of the box).
func TestAcctQueue(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 21, 0, 0, 0, time.UTC)
	for i, st := range []string{"start", "interim", "stop"} {
		if _, err := s.QueueAcct(ctx, AcctRecord{Session: "s1", Status: st, Packet: []byte{byte(i)}, Created: at.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.PendingAcct(ctx, 10)
	if err != nil || len(recs) != 3 {
		t.Fatalf("%v %v", recs, err)
	}
	if err := s.AcctFailed(ctx, recs[0].ID, "timeout"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAcct(ctx, recs[1].ID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err = s.PendingAcct(ctx, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("after reopen: %v %v", recs, err)
	}
	if recs[0].Status != "start" || recs[0].Tries != 1 || recs[0].LastErr != "timeout" || !recs[0].Created.Equal(at) || recs[1].Status != "stop" {
		t.Errorf("after reopen: %+v", recs)
	}
}
