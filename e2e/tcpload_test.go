package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/ppp"
)

// TestTCPLinesHundredPPP: 100 PPP clients (the project's own ppp.Client,
// each on its own TCP connection, as 100 emulators would dial in) at once
// on one TCP line. Each connection is a line of its own: AutoPPP takes the
// client's first LCP frame, PAP, IPCP gives each an address of its own from
// the pool, and each pings the gateway through the box's network. The
// 101st connection is refused by max-connections, a denied source and a
// source over its rate-limit are refused too, each with a log line.
//
// It logs connect → IPCP-up per client (median and worst of 100 at once,
// under -race on a shared machine: an upper bound, not a benchmark).
func TestTCPLinesHundredPPP(t *testing.T) {
	if testing.Short() {
		t.Skip("100 PPP sessions at once: skipped with -short")
	}
	const n = 100
	cfg := pap2t(t, func(src string) string {
		return src + `
[line tcp0]
kind tcp
listen 127.0.0.1:0
max-connections 100

[line tcp1]
kind tcp
listen 127.0.0.1:0
deny 127.0.0.0/8

[line tcp2]
kind tcp
listen 127.0.0.1:0
rate-limit 1
`
	})
	w := startWorld(t, cfg, worldOpts{})
	addr := lineAddr(t, w, "tcp0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// One client alone first: the unloaded connect → IPCP-up time.
	{
		start := time.Now()
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := ppp.Dial(ctx, nc, ppp.ClientConfig{User: "dial", Password: "dial"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("TCP line, one PPP client: connect -> IPCP up %v", time.Since(start).Round(time.Millisecond))
		if err := pingOnce(ctx, pc, 1000); err != nil {
			t.Error(err)
		}
		pc.Close()
		waitEvent(t, w, 30*time.Second, func(e bus.PPPDown) bool { return strings.HasPrefix(e.Line, "tcp0:") })
	}

	type result struct {
		local netip.Addr
		up    time.Duration
		err   error
	}
	results := make([]result, n)
	clients := make([]*ppp.Client, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				results[i].err = err
				return
			}
			pc, err := ppp.Dial(ctx, nc, ppp.ClientConfig{User: "dial", Password: "dial"}, nil)
			if err != nil {
				results[i].err = fmt.Errorf("client %d: %w", i, err)
				return
			}
			clients[i] = pc
			results[i].up = time.Since(start)
			results[i].local = pc.Local()
			results[i].err = pingOnce(ctx, pc, uint16(i+1))
		}()
	}
	wg.Wait()
	defer func() {
		for _, pc := range clients {
			if pc != nil {
				pc.Close()
			}
		}
	}()
	seen := map[netip.Addr]int{}
	var ups []time.Duration
	for i, r := range results {
		if r.err != nil {
			t.Errorf("client %d: %v", i, r.err)
			continue
		}
		if j, dup := seen[r.local]; dup {
			t.Errorf("clients %d and %d both got %v", j, i, r.local)
		}
		seen[r.local] = i
		if !netip.MustParsePrefix("192.168.32.0/24").Contains(r.local) || r.local == gateway {
			t.Errorf("client %d got %v, not a pool address", i, r.local)
		}
		ups = append(ups, r.up)
	}
	if len(ups) == n {
		slices.Sort(ups)
		t.Logf("TCP line, %d PPP clients at once: connect -> IPCP up median %v, worst %v",
			n, ups[n/2].Round(time.Millisecond), ups[n-1].Round(time.Millisecond))
	}
	ups0 := waitEventsOf(w, 30*time.Second, n+1, func(e bus.PPPUp) bool { return strings.HasPrefix(e.Line, "tcp0:") })
	if len(ups0) != n+1 {
		t.Errorf("%d PPP sessions up on tcp0, want %d", len(ups0), n+1)
	}
	// Each session's caller ID is its client's address (as RADIUS's
	// Calling-Station-Id), as `sessions` shows it and the records keep it.
	for _, e := range ups0 {
		if e.CallerID != "127.0.0.1" {
			t.Errorf("session %s on %s: caller ID %q, want 127.0.0.1", e.Session, e.Line, e.CallerID)
		}
	}
	live := map[string]string{}
	for _, s := range w.Box.Status().Sessions {
		live[s.ID] = s.CallerID
	}
	for _, e := range ups0[1:] {
		if live[e.Session] != e.CallerID {
			t.Errorf("sessions shows %s with caller %q, want %q", e.Session, live[e.Session], e.CallerID)
		}
	}

	// The limits, with the 100 sessions still up.
	for _, tc := range []struct{ line, why string }{
		{"tcp0", "max-connections 100"},
		{"tcp1", "not permitted"},
		{"tcp2", "rate-limit 1"},
	} {
		if tc.line == "tcp2" { // the first connection from a source is let in
			c, err := net.Dial("tcp", lineAddr(t, w, tc.line))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		if err := refused(lineAddr(t, w, tc.line)); err != nil {
			t.Errorf("%s: %v", tc.line, err)
		}
		if !waitLog(w, 10*time.Second, "connection refused", "line="+tc.line, tc.why) {
			t.Errorf("%s: no log line refusing a connection for %q", tc.line, tc.why)
		}
	}
}

// pingOnce sends echo requests to the gateway over pc until one is
// answered (at most 5, a second apart).
func pingOnce(ctx context.Context, pc *ppp.Client, id uint16) error {
	got := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := pc.ReadPacket(buf)
			if err != nil {
				return
			}
			if isEchoReply(buf[:n], id) {
				select {
				case got <- struct{}{}:
				default:
				}
			}
		}
	}()
	for seq := uint16(1); seq <= 5; seq++ {
		if err := pc.WritePacket(echoRequest(pc.Local(), pc.Remote(), id, seq)); err != nil {
			return err
		}
		select {
		case <-got:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return errors.New("no echo reply from the gateway")
}

// refused dials addr and expects the connection to be closed at once
// without a byte.
func refused(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil // refused before accept is refused too
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 64))
	if n > 0 || err == nil {
		return fmt.Errorf("refused connection read %d bytes, %w", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("connection not closed")
	}
	return nil
}

// waitLog waits until one log line holds all of subs.
func waitLog(w *world, d time.Duration, subs ...string) bool {
	deadline := time.Now().Add(d)
	for {
		for _, line := range strings.Split(w.logs.String(), "\n") {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connectToUp measures, by the bus's timestamps, the time from the first
// CONNECT on line (bus.ModemConnected) to its PPP session's IPCP up
// (bus.PPPUp); the channel gets it once both happened.
func connectToUp(t testing.TB, w *world, line string) <-chan time.Duration {
	t.Helper()
	out := make(chan time.Duration, 1)
	sub := w.Bus.SubscribeReliable("connect-to-up "+line, func(ev bus.Event) bool {
		switch e := ev.(type) {
		case bus.ModemConnected:
			return e.Line == line
		case bus.PPPUp:
			return e.Line == line
		}
		return false
	})
	t.Cleanup(sub.Close)
	go func() {
		var conn time.Time
		for env := range sub.C() {
			switch env.Event.(type) {
			case bus.ModemConnected:
				if conn.IsZero() {
					conn = env.Time
				}
			case bus.PPPUp:
				if !conn.IsZero() {
					out <- env.Time.Sub(conn)
					return
				}
			}
		}
	}()
	return out
}
