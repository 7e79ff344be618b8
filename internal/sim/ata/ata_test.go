package ata_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/phone"
	"github.com/isp-box/isp-box/internal/testutil"
)

// testLog logs to the test output with -v and ATA_DEBUG=1, else discards.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	if os.Getenv("ATA_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// runATA starts an ATA's Run; stop ends it and returns Run's error, or
// an error if Run does not return within 15 s.
func runATA(t *testing.T, opts ata.Options) (a *ata.ATA, stop func() error) {
	t.Helper()
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	a, err := ata.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return a, func() error {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			return nil
		case <-time.After(15 * time.Second):
			return errors.New("run did not return")
		}
	}
}

// startATA runs an ATA until the test ends.
func startATA(t *testing.T, opts ata.Options) *ata.ATA {
	t.Helper()
	testutil.LeakCheck(t)
	a, stop := runATA(t, opts)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	// Run is up once every line can be dialled: each line starts in a
	// goroutine of its own, so waiting for line 0 alone is not enough.
	testutil.Until(t, 5*time.Second, "lines running", func() bool {
		for i := range a.Lines() {
			_, err := a.Line(i).Dial(context.Background(), "")
			if errors.Is(err, phone.ErrNoDialtone) && strings.Contains(err.Error(), "not running") {
				return false
			}
		}
		return true
	})
	return a
}

// ringer is a modem stand-in that hands each incoming call to the test.
type ringer struct{ calls chan phone.Call }

func newRinger() *ringer                { return &ringer{calls: make(chan phone.Call, 4)} }
func (r *ringer) Incoming(c phone.Call) { r.calls <- c }
func (r *ringer) next(t *testing.T) phone.Call {
	t.Helper()
	select {
	case c := <-r.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no incoming call")
		return nil
	}
}

func uri(l *ata.Line, user string) string {
	return fmt.Sprintf("sip:%s@%s", user, l.Addr())
}

// dialResult is the end of a Dial run by dialAsync.
type dialResult struct {
	k   phone.Carrier
	err error
}

// dialAsync dials from line `from` to user at line `to`'s address
// directly, in a goroutine: the test answers meanwhile.
func dialAsync(ctx context.Context, a *ata.ATA, from, to int, user string) <-chan dialResult {
	ch := make(chan dialResult, 1)
	go func() {
		k, err := a.Line(from).Dial(ctx, uri(a.Line(to), user))
		ch <- dialResult{k, err}
	}()
	return ch
}

// connect dials from line `from` to line `to` directly and answers.
func connect(t *testing.T, a *ata.ATA, from, to int, r *ringer) (caller, callee phone.Carrier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dialed := dialAsync(ctx, a, from, to, a.Describe()[to].User)
	in := r.next(t)
	if got, want := in.CallerID(), a.Describe()[from].User; got != want {
		t.Errorf("CallerID = %q, want %q", got, want)
	}
	k2, err := in.Answer(ctx)
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	d := <-dialed
	if d.err != nil {
		t.Fatalf("Dial: %v", d.err)
	}
	return d.k, k2
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// transfer writes data into w and reads it back from r, returning how long
// the last byte took to arrive.
func transfer(w io.Writer, r io.Reader, data []byte) (time.Duration, error) {
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(r, got); err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	el := time.Since(start)
	if err := <-werr; err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, data) {
		return 0, errors.New("data corrupted")
	}
	return el, nil
}

// TestDirectCall: two lines of one ATA call each other by SIP URI (IP
// dialling, no registrar); 10 KB go each way at 28800 bit/s; a hang-up on
// either side gives the other io.EOF.
func TestDirectCall(t *testing.T) {
	a := startATA(t, ata.Options{Lines: []ata.LineConfig{{Name: "client"}, {Name: "isp"}}})
	r := newRinger()
	a.Line(1).Plug(r)

	for _, hangup := range []string{"caller", "callee"} {
		t.Run("hangup by "+hangup, func(t *testing.T) {
			k1, k2 := connect(t, a, 0, 1, r)
			if k1.Speed() != 28800 || k2.Speed() != 28800 {
				t.Errorf("Speed = %d/%d, want 28800", k1.Speed(), k2.Speed())
			}
			info := a.Describe()
			for i, li := range info {
				if li.Call != ata.Connected || li.Payload != "CLEARMODE" {
					t.Errorf("line %d: call %v payload %q, want connected CLEARMODE", i, li.Call, li.Payload)
				}
			}
			// Direct media: each side sends to the RTP address the other put in its SDP.
			if info[0].RemoteRTP != info[1].RTP || info[1].RemoteRTP != info[0].RTP {
				t.Errorf("RTP crossing: %v→%v, %v→%v", info[0].RTP, info[0].RemoteRTP, info[1].RTP, info[1].RemoteRTP)
			}

			const n = 10 * 1024
			want := time.Duration(n) * 8 * time.Second / 28800 // 2.84 s
			var wg sync.WaitGroup
			var el [2]time.Duration
			var errs [2]error
			wg.Add(2)
			go func() { defer wg.Done(); el[0], errs[0] = transfer(k1, k2, randBytes(n)) }()
			go func() { defer wg.Done(); el[1], errs[1] = transfer(k2, k1, randBytes(n)) }()
			wg.Wait()
			for i, dir := range []string{"caller→callee", "callee→caller"} {
				if errs[i] != nil {
					t.Fatalf("%s: %v", dir, errs[i])
				}
				t.Logf("%s: %d bytes in %v (line rate: %v)", dir, n, el[i].Round(time.Millisecond), want.Round(time.Millisecond))
				// Never faster than the line (less the 2-packet burst); a
				// loaded CI machine may be slower, within reason.
				if el[i] < want-3*20*time.Millisecond || el[i] > 3*want {
					t.Errorf("%s took %v, want ≈ %v", dir, el[i], want)
				}
			}

			closer, other := k1, k2
			if hangup == "callee" {
				closer, other = k2, k1
			}
			if err := closer.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			eof := make(chan error, 1)
			go func() {
				_, err := other.Read(make([]byte, 10))
				eof <- err
			}()
			select {
			case err := <-eof:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("Read after far hang-up = %v, want io.EOF", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Read did not return after far hang-up")
			}
			if _, err := other.Write([]byte("x")); err == nil {
				t.Error("Write after hang-up succeeded")
			}
			other.Close()
			testutil.Until(t, 5*time.Second, "lines idle", func() bool {
				i := a.Describe()
				return i[0].Call == ata.Idle && i[1].Call == ata.Idle
			})
			for i, li := range a.Describe() {
				if li.Media.Lost != 0 || li.Media.Late != 0 || li.Media.Foreign != 0 || li.Media.Overrun != 0 {
					t.Errorf("line %d media stats: %+v", i, li.Media)
				}
			}
		})
	}
}

// TestDialErrors: busy, rejected, unregistered and caller-abandoned calls
// turn into the errors the modem reports.
func TestDialErrors(t *testing.T) {
	a := startATA(t, ata.Options{Lines: []ata.LineConfig{{Name: "a"}, {Name: "b"}, {Name: "c"},
		{Name: "reg", Registrar: netip.MustParseAddrPort("127.0.0.1:9"), RetryInterval: time.Hour}}})
	rb := newRinger()
	a.Line(1).Plug(rb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("not registered", func(t *testing.T) {
		_, err := a.Line(3).Dial(ctx, "88567682")
		if !errors.Is(err, phone.ErrNoDialtone) {
			t.Errorf("Dial = %v, want ErrNoDialtone", err)
		}
		_, err = a.Line(0).Dial(ctx, "88567682") // no registrar at all
		if !errors.Is(err, phone.ErrNoDialtone) {
			t.Errorf("Dial without registrar = %v, want ErrNoDialtone", err)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() {
			_, err := a.Line(0).Dial(ctx, uri(a.Line(1), "b"))
			errc <- err
		}()
		rb.next(t).Reject()
		if err := <-errc; !errors.Is(err, phone.ErrBusy) {
			t.Errorf("Dial = %v, want ErrBusy", err)
		}
	})

	t.Run("busy", func(t *testing.T) {
		k1, k2 := connect(t, a, 0, 1, rb)
		defer k1.Close()
		defer k2.Close()
		_, err := a.Line(2).Dial(ctx, uri(a.Line(1), "b"))
		if !errors.Is(err, phone.ErrBusy) {
			t.Errorf("Dial to a line in a call = %v, want ErrBusy", err)
		}
	})

	t.Run("caller gives up", func(t *testing.T) {
		testutil.Until(t, 5*time.Second, "line b idle", func() bool { return a.Describe()[1].Call == ata.Idle })
		dctx, dcancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			_, err := a.Line(2).Dial(dctx, uri(a.Line(1), "b"))
			errc <- err
		}()
		in := rb.next(t)
		if got := a.Describe()[1].Call; got != ata.Ringing {
			t.Errorf("callee state = %v, want ringing", got)
		}
		dcancel() // CANCEL
		select {
		case <-in.Gone():
		case <-time.After(10 * time.Second):
			t.Fatal("Gone not closed after CANCEL")
		}
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Dial = %v, want context.Canceled", err)
		}
		if _, err := in.Answer(ctx); !errors.Is(err, phone.ErrNoCarrier) {
			t.Errorf("Answer after CANCEL = %v, want ErrNoCarrier", err)
		}
	})

	t.Run("nobody there", func(t *testing.T) {
		// A port with nothing listening: ICMP unreachable or timeout, never a carrier.
		sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
		defer scancel()
		_, err := a.Line(0).Dial(sctx, "sip:x@127.0.0.1:9")
		if err == nil {
			t.Fatal("Dial to nowhere succeeded")
		}
	})
}

// TestReInviteOnAnswer: the answering line sends a re-INVITE after the ACK
// (PAP2T "FAX Passthru Method: ReINVITE"); the caller answers it with its
// session and the carrier works.
func TestReInviteOnAnswer(t *testing.T) {
	a := startATA(t, ata.Options{Lines: []ata.LineConfig{{Name: "client"}, {Name: "isp", ReInviteOnAnswer: true}}})
	r := newRinger()
	a.Line(1).Plug(r)
	k1, k2 := connect(t, a, 0, 1, r)
	defer k1.Close()
	defer k2.Close()
	// The callee's carrier comes up after the re-INVITE's 200; the caller
	// counts its answer a moment after sending it.
	testutil.Until(t, 5*time.Second, "re-INVITE counted", func() bool { return a.Describe()[0].ReInvites.Received == 1 })
	if n := a.Describe()[1].ReInvites.Sent; n != 1 {
		t.Errorf("callee sent %d re-INVITEs, want 1", n)
	}
	for _, dir := range [][2]phone.Carrier{{k1, k2}, {k2, k1}} {
		if _, err := transfer(dir[0], dir[1], randBytes(500)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestManyCalls: 100 lines, 50 direct calls at once, 1 KB each way on
// each: every byte arrives, nothing is lost or dropped.
func TestManyCalls(t *testing.T) {
	const n = 100
	var lines []ata.LineConfig
	for i := range n {
		lines = append(lines, ata.LineConfig{Name: fmt.Sprintf("l%03d", i)})
	}
	a := startATA(t, ata.Options{Lines: lines})
	rs := make([]*ringer, n)
	for i := 1; i < n; i += 2 {
		rs[i] = newRinger()
		a.Line(i).Plug(rs[i])
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i += 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dialed := dialAsync(ctx, a, i, i+1, lines[i+1].User)
			var in phone.Call
			select {
			case in = <-rs[i+1].calls:
			case d := <-dialed:
				errs <- fmt.Errorf("line %d: dial ended before line %d rang: %w", i, i+1, d.err)
				return
			case <-ctx.Done():
				errs <- fmt.Errorf("line %d: no ring", i+1)
				return
			}
			k2, err := in.Answer(ctx)
			if err != nil {
				errs <- fmt.Errorf("line %d: answer: %w", i+1, err)
				return
			}
			d := <-dialed
			if d.err != nil {
				errs <- fmt.Errorf("line %d: dial: %w", i, d.err)
				return
			}
			for _, dir := range [][2]phone.Carrier{{d.k, k2}, {k2, d.k}} {
				if _, err := transfer(dir[0], dir[1], randBytes(1024)); err != nil {
					errs <- fmt.Errorf("line %d: %w", i, err)
				}
			}
			d.k.Close()
			k2.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d calls, 2 KB each, in %v", n/2, time.Since(start).Round(time.Millisecond))
	for _, li := range a.Describe() {
		if m := li.Media; m.Lost+m.Late+m.Foreign+m.Overrun+m.BadPayload != 0 || m.BytesReceived != 1024 {
			t.Errorf("%s: %+v", li.Name, m)
		}
	}
}
