package store

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
)

const liveChildEnv = "ISP_BOX_STORE_LIVE_CHILD" // database path; set in the child only

// TestKill9LiveCall: a call and a PPP session up when the box is killed
// with SIGKILL leave records, which the next start marks interrupted; a
// call id used again by the new run gets a record of its own.
func TestKill9LiveCall(t *testing.T) {
	if path := os.Getenv(liveChildEnv); path != "" {
		liveChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "live.db")
	cmd, out := startChild(t, "TestKill9LiveCall", liveChildEnv+"="+path)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("child ended before the call was up")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("child not ready")
	}
	_ = cmd.Process.Kill() // SIGKILL
	_ = cmd.Wait()

	ctx := t.Context()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := bus.New(nil)
	sctx, cancel := context.WithCancel(ctx)
	wait := s.Start(sctx, b)
	calls, err := s.Calls(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].Status != StatusInterrupted || calls[0].CallID != "00000001" ||
		calls[0].From != "pap2t-client" || calls[0].To != "881" || calls[0].Start.IsZero() || calls[0].End.IsZero() {
		t.Fatalf("calls after kill -9: %+v", calls)
	}
	sess, err := s.Sessions(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(sess) != 1 || sess[0].Cause != CauseInterrupted || sess[0].User != "guest" || sess[0].Start.IsZero() {
		t.Fatalf("sessions after kill -9: %+v", sess)
	}

	// The new run numbers its calls from 1 again.
	start := time.Now()
	b.Publish(bus.CallStarted{CallID: "00000001", SIPID: "new@x", From: "pap2t-client", Exten: "882"})
	b.Publish(bus.CallEnded{CallID: "00000001", SIPID: "new@x", From: "pap2t-client", To: "882", Callee: "pap2t-ispmodem",
		Start: start, End: start.Add(time.Second), Status: "NOANSWER", SIPCode: 480, HangupBy: "box"})
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	calls, err = s.Calls(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0].Status != "NOANSWER" || calls[0].To != "882" || calls[1].Status != StatusInterrupted {
		t.Fatalf("calls after a new call with the same id: %+v", calls)
	}
}

// liveChild starts a call and a session, waits until their records are
// committed, says so and waits to be killed.
func liveChild(path string) {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		panic(err)
	}
	b := bus.New(nil)
	s.Start(ctx, b)
	b.Publish(bus.CallStarted{CallID: "00000001", SIPID: "a@b", From: "pap2t-client", Exten: "881", Context: "default"})
	b.Publish(bus.PPPUp{Session: "ttyUSB0-1", Line: "ttyUSB0", User: "guest", Remote: netip.MustParseAddr("192.168.32.105")})
	for {
		calls, _ := s.Calls(ctx, 0)
		sess, _ := s.Sessions(ctx, 0)
		if len(calls) == 1 && calls[0].Status == StatusLive && len(sess) == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Hour) // until killed (select {} would trip the deadlock detector)
}
