package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isp-box/isp-box/internal/rawtty"
	"github.com/isp-box/isp-box/netstack/clientnet"
	"github.com/isp-box/isp-box/ppp"
)

// Terminal is an emulated modem's pty opened the way a PC's serial port
// is: raw, 8 data bits, no echo or CR/LF mapping.
type Terminal struct {
	f *os.File

	mu      sync.Mutex    // guards the tap
	tapping bool          // Read copies what it reads into tap
	tap     []byte        // bytes read since the tap was reset
	tapGrew chan struct{} // signalled (non-blocking) when tap grows
}

// OpenTerminal opens the tty at path in raw mode.
func OpenTerminal(path string) (*Terminal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	if err := rawtty.MakeRaw(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("raw mode on %s: %w", path, err)
	}
	return &Terminal{f: f, tapGrew: make(chan struct{}, 1)}, nil
}

// Read reads from the tty; while a tap is on it keeps a copy, so that the
// modem's result codes can be seen while the PPP client owns the reading.
func (t *Terminal) Read(p []byte) (int, error) {
	n, err := t.f.Read(p)
	if n > 0 {
		t.mu.Lock()
		if t.tapping {
			t.tap = append(t.tap, p[:n]...)
			if len(t.tap) > 1<<16 {
				t.tap = t.tap[len(t.tap)-1<<15:]
			}
			select {
			case t.tapGrew <- struct{}{}:
			default:
			}
		}
		t.mu.Unlock()
	}
	return n, err
}

// resetTap turns the tap on and forgets what it held.
func (t *Terminal) resetTap() {
	t.mu.Lock()
	t.tapping = true
	t.tap = t.tap[:0]
	t.mu.Unlock()
}

// waitTap waits until the text read since resetTap holds the line want
// (a result code, between CR/LF), whoever reads the tty.
func (t *Terminal) waitTap(ctx context.Context, want string, timeout time.Duration) error {
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		t.mu.Lock()
		seen := string(t.tap)
		t.mu.Unlock()
		if strings.Contains(seen, "\r\n"+want+"\r\n") || strings.HasPrefix(seen, want+"\r\n") {
			return nil
		}
		select {
		case <-t.tapGrew:
		case <-tm.C:
			return fmt.Errorf("no %s from the modem within %v (read %q)", want, timeout, tail([]byte(seen)))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (t *Terminal) Write(p []byte) (int, error) { return t.f.Write(p) }
func (t *Terminal) Close() error                { return t.f.Close() }

// Flush discards what the modem sent that nobody has read yet.
func (t *Terminal) Flush() error {
	rc, err := t.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.IoctlSetInt(int(fd), unix.TCFLSH, unix.TCIFLUSH) }); err != nil {
		return err
	}
	return ferr
}

// SetDeadline bounds reads and writes (the pty supports the poller).
func (t *Terminal) SetDeadline(d time.Time) error { return t.f.SetDeadline(d) }

// Command sends an AT command line and returns the lines the modem printed
// until a final result code. It reads byte by byte so that nothing after
// the result line (the first PPP frame after CONNECT) is consumed.
func (t *Terminal) Command(ctx context.Context, cmd string, timeout time.Duration) (result string, lines []string, err error) {
	if _, err := io.WriteString(t.f, cmd+"\r"); err != nil {
		return "", nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	t.f.SetReadDeadline(deadline)
	defer t.f.SetReadDeadline(time.Time{})
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := t.f.Read(b); err != nil {
			return "", lines, fmt.Errorf("waiting for the result of %s: %w", cmd, err)
		}
		if b[0] != '\r' && b[0] != '\n' {
			line = append(line, b[0])
			continue
		}
		if len(line) == 0 {
			continue
		}
		s := strings.TrimSpace(string(line))
		line = line[:0]
		if s == "" || strings.EqualFold(s, cmd) {
			continue // echo
		}
		lines = append(lines, s)
		if isFinal(s) {
			return s, lines, nil
		}
	}
}

func isFinal(s string) bool {
	for _, f := range []string{"OK", "CONNECT", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "ERROR"} {
		if s == f || strings.HasPrefix(s, f+" ") || (f == "CONNECT" && strings.HasPrefix(s, "CONNECT")) {
			return true
		}
	}
	return false
}

// Session is a client dialled in: its terminal, PPP client and IP stack.
type Session struct {
	Term    *Terminal
	PPP     *ppp.Client
	Net     *clientnet.Client
	Connect string // the CONNECT line
	pump    sync.WaitGroup
}

// DialOptions configure Dial.
type DialOptions struct {
	Number   string // dialled number
	User     string // PPP user ("" = none offered)
	Password string
	Log      *slog.Logger
	Windows  bool // behave like Windows 95 Dial-Up Networking
	// Login is set to log in at a text prompt first (the seed's dial user)
	// before starting PPP.
	Login bool
	// Step, if set, is told each step as it happens.
	Step func(format string, args ...any)
	// Init are AT commands sent after ATZ, each answered OK (e.g. "ATX4"
	// for BUSY and NO DIALTONE results, as Windows' modem INF files do).
	Init []string
	// NoStack leaves out the client IP stack: Session.Net is nil and the
	// caller sends and receives IP packets with PPP.WritePacket and
	// PPP.ReadPacket (the scale test, which wants the box's cost, not a
	// gVisor stack per client).
	NoStack bool
	// EchoInterval and EchoFailure are the client's lcp-echo-interval and
	// lcp-echo-failure; 0 = no echoes from the client.
	EchoInterval time.Duration
	EchoFailure  int
}

// ResultError is a dial that ended with a result code other than CONNECT
// (BUSY, NO ANSWER, NO CARRIER, NO DIALTONE, ERROR).
type ResultError struct {
	Command string
	Result  string
}

func (e *ResultError) Error() string { return "dial: " + e.Command + ": " + e.Result }

// Dial dials with the modem at path, waits for CONNECT, brings PPP up and
// starts a client IP stack on the link.
func Dial(ctx context.Context, path string, o DialOptions) (*Session, error) {
	step := o.Step
	if step == nil {
		step = func(string, ...any) {}
	}
	t, err := OpenTerminal(path)
	if err != nil {
		return nil, fmt.Errorf("open modem: %w", err)
	}
	fail := func(err error) (*Session, error) { t.Close(); return nil, err }
	// A result left from the last call (NO CARRIER) may still be queued or
	// arrive just now: flush, and take ATZ's answer from the second try if
	// the first result read was that leftover.
	t.Flush()
	res, _, err := t.Command(ctx, "ATZ", 5*time.Second)
	if err == nil && res != "OK" {
		res, _, err = t.Command(ctx, "ATZ", 5*time.Second)
	}
	if err != nil || res != "OK" {
		return fail(fmt.Errorf("modem reset: %q %w", res, err))
	}
	for _, c := range o.Init {
		if res, _, err := t.Command(ctx, c, 5*time.Second); err != nil || res != "OK" {
			return fail(fmt.Errorf("modem init %s: %q %w", c, res, err))
		}
	}
	step("client modem: ATDT%s", o.Number)
	res, _, err = t.Command(ctx, "ATDT"+o.Number, 90*time.Second)
	if err != nil {
		return fail(err)
	}
	if !strings.HasPrefix(res, "CONNECT") {
		return fail(&ResultError{Command: "ATDT" + o.Number, Result: res})
	}
	step("client modem: %s", res)
	s := &Session{Term: t, Connect: res}
	if o.Login {
		if err := s.login(ctx, o.User, o.Password, step); err != nil {
			return fail(err)
		}
	}
	cc := ppp.ClientConfig{User: o.User, Password: o.Password, Windows: o.Windows, WantVJ: true,
		EchoInterval: o.EchoInterval, EchoFailure: o.EchoFailure}
	pc, err := ppp.Dial(ctx, t, cc, o.Log)
	if err != nil {
		return nil, fmt.Errorf("ppp: %w", err) // Dial closed t
	}
	s.PPP = pc
	step("PPP up: local %s, gateway %s, DNS %v, auth %q", pc.Local(), pc.Remote(), pc.DNS(), pc.AuthProto())
	if o.NoStack {
		return s, nil
	}
	cn, err := clientnet.New(pc.Local(), pc.DNS(), 1500, func(pkt []byte) { pc.WritePacket(pkt) })
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("client stack: %w", err)
	}
	s.startStack(pc, cn)
	return s, nil
}

// startStack feeds the PPP link's packets to the client IP stack until
// the link closes.
func (s *Session) startStack(pc *ppp.Client, cn *clientnet.Client) {
	s.PPP, s.Net = pc, cn
	s.pump.Add(1)
	go func() {
		defer s.pump.Done()
		buf := make([]byte, 2048)
		for {
			n, err := pc.ReadPacket(buf)
			if err != nil {
				return
			}
			cn.Deliver(buf[:n])
		}
	}()
}

// login answers the text login prompt as a user at a terminal would.
func (s *Session) login(ctx context.Context, user, password string, step func(string, ...any)) error {
	if err := s.expect(ctx, "login:", 30*time.Second); err != nil {
		return err
	}
	step("login prompt; typing %q", user)
	io.WriteString(s.Term, user+"\r")
	if err := s.expect(ctx, "Password:", 30*time.Second); err != nil {
		return err
	}
	step("password prompt; typing the password")
	io.WriteString(s.Term, password+"\r")
	return nil
}

// expect reads until want appears (case-sensitive).
func (s *Session) expect(ctx context.Context, want string, timeout time.Duration) error {
	s.Term.SetDeadline(time.Now().Add(timeout))
	defer s.Term.SetDeadline(time.Time{})
	var seen []byte
	b := make([]byte, 1)
	for !strings.HasSuffix(string(seen), want) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := s.Term.Read(b); err != nil {
			return fmt.Errorf("waiting for %q (got %q): %w", want, tail(seen), err)
		}
		seen = append(seen, b[0])
	}
	return nil
}

func tail(b []byte) string {
	if len(b) > 80 {
		b = b[len(b)-80:]
	}
	return string(b)
}

// ModemHangUp hangs up the way a user who pulls the modem back to command
// mode does, with no LCP Terminate-Request first: the +++ escape with the
// guard time of silence on either side (S12, 1 s by default), then ATH.
// The box sees only the carrier go. Then the PPP client and the client
// stack are closed.
func (s *Session) ModemHangUp(ctx context.Context) error {
	guard := time.Duration(50) * 20 * time.Millisecond // S12 = 50 fiftieths of a second
	// The escape is only recognised with a guard time of silence from the
	// computer before and after it; the client's IP stack may still be
	// sending (TCP's last ACKs), so wait for a quiet guard time, and try
	// again if something broke the silence after the +++.
	var err error
	for try := 0; try < 5; try++ {
		if err = s.quiet(ctx, guard+guard/4); err != nil {
			return err
		}
		s.Term.resetTap()
		if _, err := io.WriteString(s.Term, "+++"); err != nil {
			return fmt.Errorf("+++: %w", err)
		}
		if err = s.Term.waitTap(ctx, "OK", 2*guard+5*time.Second); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("+++: %w", err)
	}
	s.Term.resetTap()
	if _, err := io.WriteString(s.Term, "ATH\r"); err != nil {
		return fmt.Errorf("ATH: %w", err)
	}
	if err := s.Term.waitTap(ctx, "OK", 10*time.Second); err != nil {
		return fmt.Errorf("ATH: %w", err)
	}
	// Close the tty first: the PPP client then ends on the read error
	// instead of sending a Terminate-Request into the modem's command mode.
	s.Term.Close()
	if s.PPP != nil {
		s.PPP.Close()
	}
	s.pump.Wait()
	if s.Net != nil {
		s.Net.Close()
	}
	return nil
}

// quiet waits until the PPP client has sent nothing for d.
func (s *Session) quiet(ctx context.Context, d time.Duration) error {
	last, _, _, _ := s.PPP.Stats()
	for {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		out, _, _, _ := s.PPP.Stats()
		if out == last {
			return nil
		}
		last = out
	}
}

// HangUp ends PPP (LCP Terminate-Request, then the PPP client closes the
// tty); the box's line hangs the call up when its PPP session ends.
func (s *Session) HangUp(ctx context.Context) error {
	var errs []error
	if s.PPP != nil {
		if err := s.PPP.Close(); err != nil && !errors.Is(err, io.EOF) {
			errs = append(errs, fmt.Errorf("ppp close: %w", err))
		}
	}
	s.pump.Wait()
	if s.Net != nil {
		s.Net.Close()
	}
	return errors.Join(errs...)
}
