package modem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/sim/hayes"
	"github.com/isp-box/isp-box/internal/sim/hayes/hayestest"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/modem/lock"
)

// rig is a line on an emulated ISP modem, and a client modem that can
// call it through an in-memory exchange.
type rig struct {
	t        *testing.T
	bus      *bus.Bus
	events   *bus.Sub
	isp      *hayes.Modem
	client   *hayes.Modem
	dte      *hayestest.DTE
	line     *Line
	sessions chan session
	cancel   context.CancelFunc
	done     chan struct{}
	// quitOn, when set, makes the handler return (the session ends from
	// the far side, as PPP after a Terminate) once it has echoed it.
	quitOn []byte
}

// session is what the test Handler saw of one call.
type session struct {
	user      string
	first     []byte    // the first bytes Read returned
	readErrAt time.Time // when Read failed
	readErr   error
	ctxErr    error // the handler's ctx.Err() when Read failed
	speed     int
	callID    string
}

const ispNumber = "88567682"

// testLog logs to stderr with MODEM_DEBUG=1, else nowhere.
func testLog() *slog.Logger {
	if os.Getenv("MODEM_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newRig(t *testing.T, tweak func(*LineConfig), tt func(*timing)) *rig {
	t.Helper()
	r := newStoppedRig(t, tweak, tt)
	r.start()
	return r
}

func newStoppedRig(t *testing.T, tweak func(*LineConfig), tt func(*timing)) *rig {
	t.Helper()
	r := &rig{t: t, bus: bus.New(nil), sessions: make(chan session, 8), done: make(chan struct{})}
	r.events = r.bus.SubscribeReliable("test", nil)
	t.Cleanup(r.events.Close)
	x := hayes.NewExchange()
	dir := t.TempDir()
	var err error
	r.isp, err = hayes.New(hayes.Options{Name: "isp", Log: testLog(), Link: filepath.Join(dir, "ttyUSB0"), RingInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.isp.Close() })
	r.client, err = hayes.New(hayes.Options{Name: "client", Link: filepath.Join(dir, "ttyCLIENT"), Phone: x.Line("5550100")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.client.Close() })
	x.Attach(ispNumber, r.isp)
	r.dte = hayestest.Open(t, r.client.Path())
	r.dte.Chat("ATE0\r", "OK\r\n")

	cfg := DefaultLineConfig("ttyUSB0")
	cfg.Device = r.isp.Path()
	cfg.Peer = "pap2t-ispmodem"
	cfg.Rings = 2
	cfg.LockDir = dir
	cfg.ToggleDTRWait = 100 * time.Millisecond
	cfg.LoginPrompt = "isp!login: "
	cfg.Issue = "Welcome to isp-box\n"
	if tweak != nil {
		tweak(&cfg)
	}
	r.line, err = NewLine(cfg, LineOptions{
		Bus:        r.bus,
		Log:        testLog(),
		Handler:    r.handler,
		CheckLogin: func(u, p string) bool { return u == "dial" && p == "dial" },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.line.t.chat = 3 * time.Second
	r.line.t.backoffMin = 100 * time.Millisecond
	r.line.t.backoffMax = 500 * time.Millisecond
	r.line.t.lockRetry = 100 * time.Millisecond
	r.line.t.loginFailDelay = 10 * time.Millisecond
	if tt != nil {
		tt(&r.line.t)
	}
	return r
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { defer close(r.done); r.line.Run(ctx) }()
	r.t.Cleanup(r.stop)
}

func (r *rig) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		r.t.Error("Run did not return after cancel")
	}
}

// handler is a PPP stand-in: it greets the caller, then echoes what it
// reads, and records when and how its Read failed.
func (r *rig) handler(ctx context.Context, c Conn, user string) error {
	s := session{user: user, speed: c.Speed(), callID: c.CallID()}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		s.readErr, s.readErrAt = err, time.Now()
		r.sessions <- s
		return err
	}
	s.first = append([]byte(nil), buf[:n]...)
	c.Write([]byte("[ready]"))
	r.sessions <- s
	for {
		n, err := c.Read(buf)
		if err != nil {
			r.sessions <- session{readErr: err, readErrAt: time.Now(), ctxErr: ctx.Err()}
			return err
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return err
		}
		if r.quitOn != nil && bytes.Contains(buf[:n], r.quitOn) {
			return nil
		}
	}
}

// waitState waits for a LineState event with state want.
func (r *rig) waitState(want string) bus.LineState {
	r.t.Helper()
	return waitEvent(r.t, r.events, func(ev bus.LineState) bool { return ev.State == bus.LineStatus(want) })
}

func waitEvent[T bus.Event](t *testing.T, sub *bus.Sub, match func(T) bool) T {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case env := <-sub.C():
			if ev, ok := env.Event.(T); ok && match(ev) {
				return ev
			}
		case <-timeout:
			var zero T
			t.Fatalf("timed out waiting for %T", zero)
			return zero
		}
	}
}

func (r *rig) nextSession() session {
	r.t.Helper()
	select {
	case s := <-r.sessions:
		return s
	case <-time.After(30 * time.Second):
		r.t.Fatal("no session")
		return session{}
	}
}

// dial makes the client call the ISP and waits for its CONNECT.
func (r *rig) dial() {
	r.t.Helper()
	r.dte.Chat(
		"ATDT"+ispNumber+"\r", "CONNECT 28800",
		"", "\r\n",
	)
}

// lcpFrame is an LCP Configure-Request as Windows 95 sends it right after
// CONNECT, with the control field escaped (RFC 1662).
var lcpFrame = []byte{0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21, 0x7d, 0x21, 0x7d, 0x21, 0x7d, 0x20, 0x7d, 0x34, 0x7e}

// TestAnswerAutoPPPCarrierLoss: two RINGs, ATA, CONNECT 28800, an AutoPPP
// session that exchanges data with the caller; the caller hangs up and the
// session's Read fails within 1 s; the line is idle again and answers the
// next call, tied to the SIP call seen on the bus.
func TestAnswerAutoPPPCarrierLoss(t *testing.T) {
	r := newRig(t, nil, nil)
	r.waitState("idle")
	if caps := r.line.Status().Caps; caps != "pty: no DCD/DTR, RTS/CTS" {
		t.Errorf("caps %q", caps)
	}
	r.bus.Publish(bus.CallStarted{CallID: "00000002", From: "pap2t-client", Exten: ispNumber, Target: "pap2t-ispmodem"})

	for call := 1; call <= 2; call++ {
		r.dial()
		r.dte.Expect("login: ")
		r.dte.Send(string(lcpFrame))
		s := r.nextSession()
		if s.readErr != nil {
			t.Fatalf("call %d: first Read: %v", call, s.readErr)
		}
		if !bytes.HasPrefix(lcpFrame, s.first) || len(s.first) == 0 {
			t.Fatalf("call %d: handler's first bytes %x, want the LCP frame %x replayed", call, s.first, lcpFrame)
		}
		if s.user != "" || s.speed != 28800 {
			t.Errorf("call %d: user %q speed %d", call, s.user, s.speed)
		}
		if call == 1 && s.callID != "00000002" {
			t.Errorf("call id %q, want 00000002", s.callID)
		}
		r.dte.Chat(
			"", "[ready]",
			"ping over the line", "ping over the line",
		)
		st := r.line.Status()
		if st.State != "connected" || st.Speed != 28800 || st.LastConnect != "CONNECT 28800/ARQ" {
			t.Errorf("status %+v", st)
		}

		start := time.Now()
		r.client.DropCarrier() // the caller hangs up
		var readErr time.Time
		for readErr.IsZero() {
			s := r.nextSession()
			if !s.readErrAt.IsZero() {
				readErr = s.readErrAt
				if !errors.Is(s.readErr, ErrCarrierLost) {
					t.Errorf("Read error %v, want ErrCarrierLost", s.readErr)
				}
				// Carrier loss reaches the handler as a Read error, not
				// as its context ending (which means the line shuts down):
				// PPP must record "carrier lost", not "shutdown".
				if s.ctxErr != nil {
					t.Errorf("handler's ctx ended (%v) on carrier loss, want only the Read error", s.ctxErr)
				}
			}
		}
		t.Logf("call %d: carrier dropped -> Read error after %v", call, readErr.Sub(start))
		if d := readErr.Sub(start); d > time.Second {
			t.Errorf("Read failed %v after the hang-up, want < 1 s", d)
		}
		r.waitState("hangingup")
		r.waitState("idle")
	}
	if st := r.line.Status(); st.Answered != 2 {
		t.Errorf("answered %d, want 2", st.Answered)
	}
}

func TestRingsCounted(t *testing.T) {
	r := newRig(t, nil, nil)
	r.waitState("idle")
	r.dte.Send("ATDT" + ispNumber + "\r")
	for i := 1; i <= 2; i++ {
		ev := waitEvent(t, r.events, func(ev bus.LineRing) bool { return true })
		if ev.Count != i {
			t.Fatalf("RING count %d, want %d", ev.Count, i)
		}
	}
	r.waitState("answering")
	mc := waitEvent(t, r.events, func(ev bus.ModemConnected) bool { return true })
	if mc.Speed != 28800 || mc.Protocol != "ARQ" {
		t.Errorf("ModemConnected %+v", mc)
	}
}

func TestLoginPrompt(t *testing.T) {
	r := newRig(t, nil, nil)
	r.waitState("idle")
	r.dial()
	if got := r.dte.Expect("isp!login: "); !bytes.Contains([]byte(got), []byte("Welcome to isp-box\r\n")) {
		t.Errorf("no issue before the prompt: %q", got)
	}
	r.dte.Chat(
		"dial\r", "dial\r\n", // echoed
		"", "Password: ",
		"wrong\r", "Login incorrect",
		"", "login: ",
		"dial\r", "Password: ",
	)
	r.dte.Send("dial\r")
	r.dte.Send(string(lcpFrame)) // the login shell starts PPP: pppd's first frame
	s := r.nextSession()
	if s.user != "dial" {
		t.Fatalf("user %q, want dial", s.user)
	}
	if len(s.first) == 0 || s.first[0] != 0x7e {
		t.Errorf("first bytes after the login %x, want the frame", s.first)
	}
	r.dte.Expect("[ready]")
}

// TestAutoPPPAfterTyping: the caller types something, then starts PPP at the
// prompt (a dial-up script that gave up): still AutoPPP.
func TestAutoPPPAfterTyping(t *testing.T) {
	r := newRig(t, nil, nil)
	r.waitState("idle")
	r.dial()
	r.dte.Chat(
		"", "login: ",
		"CLIENT", "CLIENT",
	)
	r.dte.Send(string(lcpFrame))
	s := r.nextSession()
	if s.user != "" || len(s.first) == 0 || s.first[0] != 0x7e {
		t.Fatalf("session %+v, want AutoPPP with the frame replayed", s)
	}
}

func TestLoginRefused(t *testing.T) {
	r := newRig(t, nil, nil)
	r.waitState("idle")
	r.dial()
	for i := 0; i < 3; i++ {
		r.dte.Chat(
			"", "login: ",
			"dial\r", "Password: ",
			"nope\r", "Login incorrect",
		)
	}
	r.dte.Expect("NO CARRIER") // the line hung up
	r.waitState("idle")
	select {
	case s := <-r.sessions:
		t.Fatalf("handler ran after a refused login: %+v", s)
	default:
	}
}

// TestSilentModemReset: the idle modem stops answering AT; modem-check
// notices, the line reports it and resets; once the modem is back, the line
// is idle and answers calls.
func TestSilentModemReset(t *testing.T) {
	r := newRig(t, func(c *LineConfig) { c.ModemCheck = 300 * time.Millisecond }, func(tm *timing) { tm.chat = 500 * time.Millisecond })
	r.waitState("idle")
	r.isp.GoSilent(true)
	ev := waitEvent(t, r.events, func(ev bus.ModemError) bool { return true })
	t.Logf("reported: %s", ev.Err)
	r.waitState("resetting")
	r.isp.GoSilent(false)
	r.waitState("idle")
	r.dial()
	r.dte.Expect("login: ")
	r.dte.Send(string(lcpFrame))
	if s := r.nextSession(); s.readErr != nil {
		t.Fatal(s.readErr)
	}
}

// TestDeviceVanishes: the USB adapter is unplugged during a call and comes
// back later at the same path; the line reopens by itself.
func TestDeviceVanishes(t *testing.T) {
	r := newRig(t, nil, nil)
	r.waitState("idle")
	lockPath := lock.Path(r.line.config().LockDir, r.isp.Path())
	r.dial()
	r.dte.Expect("login: ")
	r.dte.Send(string(lcpFrame))
	r.nextSession()
	r.isp.Vanish()
	waitEvent(t, r.events, func(ev bus.ModemError) bool { return true })
	r.waitState("opening")
	if _, err := os.Stat(lockPath); !os.IsNotExist(err) {
		t.Errorf("lock %s still there after the device vanished: %v", lockPath, err)
	}
	// Missing device: reopen attempts fail and are reported, with backoff.
	waitEvent(t, r.events, func(ev bus.ModemError) bool { return true })
	if err := r.isp.Restore(); err != nil {
		t.Fatal(err)
	}
	r.waitState("idle")
	if r.line.Status().Errors < 2 {
		t.Errorf("errors %d", r.line.Status().Errors)
	}
	r.dte.Expect("NO CARRIER") // the old call died with the device
	r.dial()
	r.dte.Expect("login: ")
	r.dte.Send(string(lcpFrame))
	for {
		s := r.nextSession()
		if len(s.first) > 0 {
			break
		}
	}
}

// TestForeignLock: minicom (here: a sleep) holds the lock; the line waits,
// and takes the line once the holder is gone (its lock now stale).
func TestForeignLock(t *testing.T) {
	dir := t.TempDir()
	isp, err := hayes.New(hayes.Options{Link: filepath.Join(dir, "ttyUSB0")})
	if err != nil {
		t.Fatal(err)
	}
	defer isp.Close()
	holder := exec.Command("sleep", "60")
	if err := holder.Start(); err != nil {
		t.Skip(err)
	}
	defer holder.Process.Kill()
	lockPath := lock.Path(dir, isp.Path())
	os.WriteFile(lockPath, []byte(fmt.Sprintf("%10d\n", holder.Process.Pid)), 0o644)

	b := bus.New(nil)
	sub := b.SubscribeReliable("test", nil)
	defer sub.Close()
	cfg := DefaultLineConfig("ttyUSB0")
	cfg.Device, cfg.LockDir, cfg.ToggleDTRWait = isp.Path(), dir, 50*time.Millisecond
	l, err := NewLine(cfg, LineOptions{Bus: b, Handler: func(context.Context, Conn, string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	l.t.lockRetry = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ev := waitEvent(t, sub, func(ev bus.LineState) bool {
		return ev.Detail != "" && ev.State == "opening" && ev.Detail != cfg.Device
	})
	if want := "locked by sleep (pid " + strconv.Itoa(holder.Process.Pid) + ")"; ev.Detail != want {
		t.Errorf("detail %q, want %q", ev.Detail, want)
	}
	// `isp-box lines` says why the line waits, not just "opening".
	if st := l.Status(); !strings.Contains(st.LastError, "locked by sleep") || !strings.Contains(st.LastError, "UUCP lock") {
		t.Errorf("while waiting: last error %q, want the lock's holder", st.LastError)
	}
	time.Sleep(300 * time.Millisecond)
	if got, _ := lock.ReadPID(lockPath); got != holder.Process.Pid {
		t.Fatalf("live foreign lock replaced: now %d", got)
	}
	holder.Process.Kill()
	holder.Wait()
	waitEvent(t, sub, func(ev bus.LineState) bool { return ev.State == "idle" })
	if st := l.Status(); st.LastError != "" {
		t.Errorf("after the lock was released and the line came up: last error %q stays", st.LastError)
	}
	if got, _ := lock.ReadPID(lockPath); got != os.Getpid() {
		t.Errorf("lock holds %d, want ours %d", got, os.Getpid())
	}
	cancel()
	<-done
	if _, err := os.Stat(lockPath); !os.IsNotExist(err) {
		t.Errorf("lock left after Run returned: %v", err)
	}
}

// TestDirectLine: a null-modem line, no AT: the handler runs at once.
func TestDirectLine(t *testing.T) {
	dir := t.TempDir()
	// The emulator is only used as a pty here: a direct line never talks AT,
	// so it sees the data as the far end of a cable would.
	far, err := hayes.New(hayes.Options{Link: filepath.Join(dir, "ttyS0")})
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	got := make(chan string, 1)
	cfg := DefaultLineConfig("ttyS0")
	cfg.Device, cfg.LockDir, cfg.Direct = far.Path(), dir, true
	l, err := NewLine(cfg, LineOptions{Handler: func(ctx context.Context, c Conn, user string) error {
		c.Write([]byte("ATI3\r")) // talk to the "far end": the emulator answers
		var b []byte
		buf := make([]byte, 64)
		for !bytes.Contains(b, []byte("OK")) {
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			b = append(b, buf[:n]...)
		}
		got <- string(b)
		<-ctx.Done()
		return io.EOF
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	select {
	case s := <-got:
		if !bytes.Contains([]byte(s), []byte("Sportster")) {
			t.Errorf("got %q", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("handler did not run on the direct line")
	}
	cancel()
	<-done
}

// TestCallerIDAndStoppedRinging: the modem reports the caller's number
// between the first and second RING; the caller gives up before the third,
// and 10 s (here shortened) after the last RING the line is idle again.
func TestCallerIDAndStoppedRinging(t *testing.T) {
	r := newRig(t, func(c *LineConfig) {
		c.Rings = 4
		c.InitChat = []string{"", "ATQ0V1H0", "OK", "ATS0=0Q0&D3&C1#CID=1", "OK"}
	}, func(tm *timing) { tm.ringGap = time.Second })
	r.waitState("idle")
	r.dte.Send("ATDT" + ispNumber + "\r")
	ev := waitEvent(t, r.events, func(ev bus.LineRing) bool { return ev.Count == 2 })
	if ev.CallerID != "5550100" {
		t.Errorf("caller id %q, want 5550100", ev.CallerID)
	}
	r.dte.Chat("\r", "NO CARRIER") // any key aborts the dial: the caller hangs up
	start := time.Now()
	r.waitState("idle")
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("idle after %v: the ring gap was not waited for", d)
	}
	if st := r.line.Status(); st.Answered != 0 || st.CallerID != "" {
		t.Errorf("status after an unanswered call: %+v", st)
	}
}

// TestLoginTime: nobody logs in; mgetty's warning, then goodbye and hang-up.
func TestLoginTime(t *testing.T) {
	r := newRig(t, func(c *LineConfig) { c.LoginTime = 300 * time.Millisecond }, func(tm *timing) { tm.loginGrace = 300 * time.Millisecond })
	r.waitState("idle")
	r.dial()
	r.dte.Expect("login: ")
	r.dte.Expect("You have one minute left")
	r.dte.Expect("Goodbye.")
	r.dte.Expect("NO CARRIER")
	r.waitState("idle")
}

// TestReload: a new config reaches an idle line at once (re-init) and the
// next call uses it.
func TestReload(t *testing.T) {
	r := newRig(t, nil, nil)
	r.waitState("idle")
	cfg := r.line.config()
	cfg.Rings = 1
	cfg.LoginPrompt = "reloaded login: "
	r.line.Reload(cfg)
	r.waitState("initialising")
	r.waitState("idle")
	r.dte.Send("ATDT" + ispNumber + "\r")
	waitEvent(t, r.events, func(ev bus.LineState) bool { return ev.State == "answering" })
	r.dte.Expect("reloaded login: ")
}

// TestPortOwnership: port-group/port-mode are applied to the real device.
func TestPortOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	r := newRig(t, func(c *LineConfig) { c.PortMode, c.PortOwner, c.PortGroup = 0o640, "root", "root" }, nil)
	r.waitState("idle")
	real, _ := filepath.EvalSymlinks(r.isp.Path())
	fi, err := os.Stat(real)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
}

// TestForceInit: the modem is still online from an earlier call and the
// line does not toggle DTR, so the init chat goes out as data and gets no
// OK; mgetty's force-init (+++ with guard times, ATH0) brings it back.
func TestForceInit(t *testing.T) {
	r := newStoppedRig(t, func(c *LineConfig) { c.ToggleDTR = false }, func(tm *timing) { tm.chat = time.Second })
	isp := hayestest.Open(t, r.isp.Path())
	isp.Chat("ATS0=1\r", "OK\r\n")
	r.dial()
	isp.Expect("CONNECT")
	isp.File().Close()
	r.start()
	r.dte.Expect("ATQ0V1H0") // the init chat, received as data by the caller
	r.waitState("idle")
	r.dte.Expect("NO CARRIER") // force-init hung up
	if r.isp.Online() {
		t.Error("still online after force-init")
	}
}

// TestRunLeavesNothing: after a call and Run's return, no goroutine of the
// line, the port or the session is left.
func TestRunLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	r := newRig(t, nil, nil)
	r.waitState("idle")
	r.dial()
	r.dte.Expect("login: ")
	r.dte.Send(string(lcpFrame))
	r.nextSession()
	r.stop()
	r.events.Close()
	r.dte.File().Close()
	r.isp.Close()
	r.client.Close()
	testutil.GoroutinesBack(t, before, 5*time.Second)
	if st := r.line.Status(); st.State != "down" {
		t.Errorf("state after Run: %q", st.State)
	}
}

// TestAutobauding: the DTE speed follows the CONNECT rate during the call
// (28800 is not a termios constant: BOTHER) and returns afterwards.
func TestAutobauding(t *testing.T) {
	r := newRig(t, func(c *LineConfig) { c.Autobauding = true }, nil)
	r.waitState("idle")
	real, _ := filepath.EvalSymlinks(r.isp.Path())
	speed := func() (uint32, uint32) {
		fd, err := unix.Open(real, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		if err != nil { // TIOCEXCL: root only
			t.Skipf("second open: %v", err)
		}
		defer unix.Close(fd)
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS2)
		if err != nil {
			t.Fatal(err)
		}
		return tio.Cflag & unix.CBAUD, tio.Ospeed
	}
	r.dial()
	r.dte.Expect("login: ")
	r.dte.Send(string(lcpFrame))
	r.nextSession()
	if cbaud, ospeed := speed(); cbaud != unix.BOTHER || ospeed != 28800 {
		t.Errorf("during the call: CBAUD %#o ospeed %d, want BOTHER 28800", cbaud, ospeed)
	}
	r.client.DropCarrier()
	r.waitState("idle")
	if cbaud, _ := speed(); cbaud != unix.B38400 {
		t.Errorf("after the call: CBAUD %#o, want B38400", cbaud)
	}
}
