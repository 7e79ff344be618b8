package store

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	killChildEnv = "ISP_BOX_STORE_KILL_CHILD" // database path; set in the child only
	killStartEnv = "ISP_BOX_STORE_KILL_START" // first record id of this round
)

// TestKill9 is the durability promise of the package: a writer is killed
// with SIGKILL at a random moment, several times over the same file, and
// after each kill the database passes integrity_check and holds every
// record whose commit the writer had acknowledged.
//
// The writer is this test binary re-executed with killChildEnv set. It
// commits records one transaction at a time and prints "c ID", "s ID" or
// "r ID" on stdout after each commit returns.
func TestKill9(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		killChild(path)
		return
	}
	if testing.Short() {
		t.Skip("kill -9 test skipped in -short mode")
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	path := filepath.Join(t.TempDir(), "kill.db")
	acked := map[string]bool{}
	next := 0
	const rounds = 6
	for round := range rounds {
		got := runAndKill(t, path, next, time.Duration(rng.IntN(400))*time.Millisecond)
		for _, a := range got {
			acked[a] = true
		}
		next += 1000000
		n := verify(t, path, acked)
		t.Logf("round %d: %d acknowledged this round, %d in total, %d records in the file", round, len(got), len(acked), n)
	}
}

// startChild runs this test binary's test (the child half of a test,
// chosen by env) and returns it with its standard output.
func startChild(t *testing.T, test string, env ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// runAndKill starts a writer, lets it run for after (counted from its first
// acknowledgement), kills it with SIGKILL and returns what it acknowledged.
func runAndKill(t *testing.T, path string, start int, after time.Duration) []string {
	t.Helper()
	cmd, out := startChild(t, "TestKill9", killChildEnv+"="+path, killStartEnv+"="+strconv.Itoa(start))
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var acks []string
	first, ok := <-lines
	if !ok {
		cmd.Wait()
		t.Fatal("writer exited before its first commit")
	}
	acks = append(acks, first)
	timer := time.NewTimer(after)
	defer timer.Stop()
	killed := false
	for !killed {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("writer exited on its own after %d records", len(acks))
			}
			acks = append(acks, l)
		case <-timer.C:
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	// Whatever it printed before dying was acknowledged after a commit.
	for l := range lines {
		acks = append(acks, l)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer did not die of SIGKILL: %v", err)
	}
	// A line cut by the kill is not an acknowledgement.
	if n := len(acks); n > 0 && len(strings.Fields(acks[n-1])) != 2 {
		acks = acks[:n-1]
	}
	return acks
}

// verify opens the file as isp-box would after the crash and checks it.
func verify(t *testing.T, path string, acked map[string]bool) int {
	t.Helper()
	ctx := t.Context()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer s.Close()
	var res string
	if err := s.db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check = %q, %v", res, err)
	}
	have := map[string]bool{}
	calls, err := s.Calls(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		have["c "+c.CallID] = true
	}
	sessions, err := s.Sessions(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range sessions {
		have["s "+p.Session] = true
	}
	regs, err := s.Registrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		// A registration row is overwritten by later ones of the same
		// peer; the contact carries the id of the latest.
		have["r "+r.Contact] = true
	}
	missing := 0
	for a := range acked {
		if strings.HasPrefix(a, "r ") {
			continue // checked below: only the last per peer survives
		}
		if !have[a] {
			missing++
			if missing < 10 {
				t.Errorf("acknowledged record %q is missing", a)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged records missing", missing)
	}
	// For each peer, the stored contact must be at least as new as the
	// newest acknowledged one.
	newest := map[string]int{}
	for a := range acked {
		if f := strings.Fields(a); f[0] == "r" {
			id, _ := strconv.Atoi(f[1])
			if id > newest[peerOf(id)] {
				newest[peerOf(id)] = id
			}
		}
	}
	for _, r := range regs {
		id, _ := strconv.Atoi(r.Contact)
		if id < newest[r.Peer] {
			t.Errorf("registration %s holds %d, older than acknowledged %d", r.Peer, id, newest[r.Peer])
		}
		delete(newest, r.Peer)
	}
	for p, id := range newest {
		t.Errorf("registration %s (acknowledged %d) is missing", p, id)
	}
	return len(calls) + len(sessions)
}

func peerOf(id int) string { return fmt.Sprintf("peer%d", id%5) }

// killChild is the writer. It never returns normally: it is killed, or
// gives up after a minute so that a broken parent leaves no process behind.
func killChild(path string) {
	start, _ := strconv.Atoi(os.Getenv(killStartEnv))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	pad := strings.Repeat("x", 300) // grows the WAL so checkpoints happen within a round
	for id := start; ctx.Err() == nil; id++ {
		var ack string
		switch id % 3 {
		case 0:
			c := call(id)
			c.CallID, c.SIPID = strconv.Itoa(id), pad
			err = s.SaveCall(ctx, c)
			ack = "c " + c.CallID
		case 1:
			p := session(id)
			p.Session, p.Cause = strconv.Itoa(id), pad
			err = s.SaveSession(ctx, p)
			ack = "s " + p.Session
		case 2:
			err = s.SaveRegistration(ctx, Registration{Peer: peerOf(id), AOR: "sip:x@box", Contact: strconv.Itoa(id), UserAgent: pad})
			ack = "r " + strconv.Itoa(id)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Stdout.WriteString(ack + "\n") // unbuffered: one write(2) after the commit
	}
	os.Exit(4)
}
