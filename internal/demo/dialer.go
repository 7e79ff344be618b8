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

	"github.com/isp-box/isp-box/netstack/clientnet"
	"github.com/isp-box/isp-box/ppp"
)

// Terminal is an emulated modem's pty opened the way a PC's serial port
// is: raw, 8 data bits, no echo or CR/LF mapping.
type Terminal struct {
	f *os.File
}

// OpenTerminal opens the tty at path in raw mode.
func OpenTerminal(path string) (*Terminal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	if err := makeRaw(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("raw mode on %s: %w", path, err)
	}
	return &Terminal{f: f}, nil
}

func (t *Terminal) Read(p []byte) (int, error)  { return t.f.Read(p) }
func (t *Terminal) Write(p []byte) (int, error) { return t.f.Write(p) }
func (t *Terminal) Close() error                { return t.f.Close() }

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
}

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
	if res, _, err := t.Command(ctx, "ATZ", 5*time.Second); err != nil || res != "OK" {
		return fail(fmt.Errorf("modem reset: %q %v", res, err))
	}
	step("client modem: ATDT%s", o.Number)
	res, _, err := t.Command(ctx, "ATDT"+o.Number, 90*time.Second)
	if err != nil {
		return fail(err)
	}
	if !strings.HasPrefix(res, "CONNECT") {
		return fail(fmt.Errorf("dial: %s", res))
	}
	step("client modem: %s", res)
	s := &Session{Term: t, Connect: res}
	if o.Login {
		if err := s.login(ctx, o.User, o.Password, step); err != nil {
			return fail(err)
		}
	}
	cc := ppp.ClientConfig{User: o.User, Password: o.Password, Windows: o.Windows, WantVJ: true}
	pc, err := ppp.Dial(ctx, t, cc, o.Log)
	if err != nil {
		return nil, fmt.Errorf("ppp: %w", err) // Dial closed t
	}
	s.PPP = pc
	step("PPP up: local %s, gateway %s, DNS %v, auth %q", pc.Local(), pc.Remote(), pc.DNS(), pc.AuthProto())
	cn, err := clientnet.New(pc.Local(), pc.DNS(), 1500, func(pkt []byte) { pc.WritePacket(pkt) })
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("client stack: %w", err)
	}
	s.Net = cn
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
	return s, nil
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

// HangUp ends PPP (LCP Terminate), then hangs the modem up with +++ and ATH.
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

// makeRaw sets f's terminal to raw mode as cfmakeraw(3) does.
func makeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			serr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS
		t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		serr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return serr
}
