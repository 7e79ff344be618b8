package modem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrLoginFailed ends a call whose caller did not log in.
var ErrLoginFailed = errors.New("modem: login failed")

// DetectPPPFrame is mgetty's AutoPPP test (logname.c, with -DAUTO_PPP) on b,
// which starts at a 0x7E flag: after un-escaping (0x7D x → x^0x20) and
// skipping repeated flags the bytes must be FF 03 C0 21 — all-stations, UI,
// LCP. decided is false while b is a prefix of such a frame.
func DetectPPPFrame(b []byte) (isPPP, decided bool) {
	want := [...]byte{0xff, 0x03, 0xc0, 0x21}
	if len(b) == 0 || b[0] != 0x7e {
		return false, len(b) > 0
	}
	i := 1
	for i < len(b) && b[i] == 0x7e {
		i++
	}
	got := 0
	for i < len(b) && got < len(want) {
		c := b[i]
		i++
		if c == 0x7d {
			if i >= len(b) {
				return false, false
			}
			c = b[i] ^ 0x20
			i++
		}
		if c != want[got] {
			return false, true
		}
		got++
	}
	return got == len(want), got == len(want)
}

// loginInput is the login-name editor with AutoPPP detection: a pure state
// machine fed with what the caller sends, so it can be fuzzed.
type loginInput struct {
	autoPPP bool
	detect  func([]byte) (isPPP, decided bool)

	raw    []byte // everything fed
	cursor int    // raw[:cursor] is settled text; a frame candidate may start at cursor
	line   []byte // the name typed so far
}

// loginStep is what one feed produced.
type loginStep struct {
	echo     []byte // to send back to the caller
	done     bool   // a line was completed (CR or LF)
	line     string // the completed line
	ppp      bool   // a PPP frame was detected
	pppStart int    // index in raw where the frame starts
}

// feed processes b. Bytes from a 0x7E on are not echoed until the detector
// decided they are not PPP: echoing a peer's LCP frame back to it would look
// like a looped-back link to its PPP.
func (li *loginInput) feed(b []byte) loginStep {
	li.raw = append(li.raw, b...)
	var st loginStep
	for li.cursor < len(li.raw) {
		c := li.raw[li.cursor]
		if c == 0x7e && li.autoPPP {
			isPPP, decided := li.detect(li.raw[li.cursor:])
			if !decided {
				return st // wait for more
			}
			if isPPP {
				st.ppp, st.pppStart = true, li.cursor
				return st
			}
		}
		li.cursor++
		switch {
		case c == '\r' || c == '\n':
			if len(li.line) == 0 {
				continue // mgetty ignores empty lines before a name
			}
			st.echo = append(st.echo, '\r', '\n')
			st.done, st.line = true, string(li.line)
			li.line = nil
			// What follows the line (a password typed ahead) stays in
			// raw after cursor for the caller.
			return st
		case c == 0x08 || c == 0x7f:
			if len(li.line) > 0 {
				li.line = li.line[:len(li.line)-1]
				st.echo = append(st.echo, 0x08, ' ', 0x08)
			}
		case c >= 0x20 && c < 0x7f:
			if len(li.line) < 64 {
				li.line = append(li.line, c)
				st.echo = append(st.echo, c)
			}
		}
	}
	return st
}

// rest is what was fed after the completed line.
func (li *loginInput) rest() []byte { return li.raw[li.cursor:] }

// expandPrompt expands mgetty's login-prompt escapes (logname.c ln_escape_prompt):
// @ the host name, \n \r \t \\ \b \f \v, \L the tty, \I the CONNECT string,
// \D date, \T time, \P the port name.
func expandPrompt(s, tty, connect string, now time.Time) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '@':
			h, _ := os.Hostname()
			b.WriteString(h)
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteString("\r\n")
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'v':
				b.WriteByte('\v')
			case 'L', 'P':
				b.WriteString(tty)
			case 'I':
				b.WriteString(connect)
			case 'D':
				b.WriteString(now.Format("01/02/06"))
			case 'T':
				b.WriteString(now.Format("15:04:05"))
			default:
				b.WriteByte(s[i])
			}
		case c == '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// login runs the text login on c: issue, login: prompt, Password:, up to
// three tries, within LoginTime (then "one minute left", then goodbye, as
// mgetty). It returns the user, or "" with no error when the caller started
// PPP instead (AutoPPP); in both cases c's Read replays what came after.
func (l *Line) login(ctx context.Context, c *conn, cfg LineConfig, connect string) (string, error) {
	lt := cfg.LoginTime
	if lt <= 0 {
		lt = 240 * time.Second
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	// mgetty: after login-time a warning, a minute later goodbye.
	wg.Add(1)
	go func() {
		defer wg.Done()
		warn := l.clk.NewTimer(lt)
		defer warn.Stop()
		select {
		case <-warn.C():
		case <-ctx.Done():
			return
		}
		c.Write([]byte("\r\n\r\nHey! Please login now. You have one minute left\r\n"))
		grace := l.clk.NewTimer(l.t.loginGrace)
		defer grace.Stop()
		select {
		case <-grace.C():
			cancel(errLoginTime)
		case <-ctx.Done():
		}
	}()

	detect := l.opts.DetectPPP
	if detect == nil {
		detect = DetectPPPFrame
	}
	if cfg.Issue != "" {
		if _, err := c.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(cfg.Issue, "\r\n", "\n"), "\n", "\r\n"))); err != nil {
			return "", err
		}
	}
	var carry []byte // typed ahead past the last line
	for try := 0; try < 3; try++ {
		prompt := "\r\n" + expandPrompt(cfg.LoginPrompt, cfg.Name, connect, l.clk.Now())
		if _, err := c.Write([]byte(prompt)); err != nil {
			return "", err
		}
		li := &loginInput{autoPPP: cfg.AutoPPP, detect: detect}
		name, ppp, err := l.readInput(ctx, c, li, carry, true)
		if err != nil {
			return "", err
		}
		if ppp {
			return "", nil
		}
		carry = li.rest()
		if _, err := c.Write([]byte("Password: ")); err != nil {
			return "", err
		}
		// mgetty looks for PPP at the login name only; here a frame at
		// Password: starts PPP too. A caller whose tty was still cooked
		// when the prompt came (an emulated machine's pppd opening its
		// port: the kernel echoes what waited in the UART) sends the
		// prompt back as a "name" and its first LCP frame here. No typed
		// password looks like a frame: the test wants 7E FF 03 C0 21.
		pi := &loginInput{autoPPP: cfg.AutoPPP, detect: detect}
		pw, ppp, err := l.readInput(ctx, c, pi, carry, false)
		if err != nil {
			return "", err
		}
		if ppp {
			return "", nil
		}
		carry = pi.rest()
		if l.opts.CheckLogin != nil && l.opts.CheckLogin(name, pw) {
			if len(carry) > 0 {
				c.replay.Unread(carry)
			}
			l.log.Info("login", "user", name)
			return name, nil
		}
		l.log.Warn("login incorrect", "user", name)
		if l.sleep(ctx, l.t.loginFailDelay) {
			return "", context.Cause(ctx)
		}
		if _, err := c.Write([]byte("\r\nLogin incorrect\r\n")); err != nil {
			return "", err
		}
	}
	return "", ErrLoginFailed
}

var errLoginTime = errors.New("modem: login time ran out")

// readInput feeds li until a line or a PPP frame. With AutoPPP the frame's
// bytes are put back into c for the Handler.
func (l *Line) readInput(ctx context.Context, c *conn, li *loginInput, carry []byte, echo bool) (string, bool, error) {
	chunk := carry
	for {
		if len(chunk) > 0 {
			st := li.feed(chunk)
			if echo && len(st.echo) > 0 {
				if _, err := c.Write(st.echo); err != nil {
					return "", false, err
				}
			}
			if st.ppp {
				c.replay.Unread(li.raw[st.pppStart:])
				l.log.Info("AutoPPP: PPP frame at the login prompt")
				return "", true, nil
			}
			if st.done {
				if !echo {
					c.Write([]byte("\r\n"))
				}
				return st.line, false, nil
			}
		}
		var err error
		chunk, err = readOrCancel(ctx, c)
		if err != nil {
			if errors.Is(context.Cause(ctx), errLoginTime) {
				c.Write([]byte("\r\n\r\n...login time ran out. Goodbye.\r\n"))
				return "", false, fmt.Errorf("%w", errLoginTime)
			}
			return "", false, err
		}
	}
}

// readOrCancel reads a chunk from c, or gives up when ctx (the login's
// timer, a child of c's context) ends.
func readOrCancel(ctx context.Context, c *conn) ([]byte, error) {
	if b := c.replay.Take(); b != nil {
		return b, nil
	}
	select {
	case b := <-c.in:
		return b, nil
	case <-ctx.Done():
		if c.ctx.Err() != nil {
			return nil, context.Cause(c.ctx)
		}
		return nil, context.Cause(ctx)
	case <-c.ctx.Done():
		return nil, context.Cause(c.ctx)
	}
}
