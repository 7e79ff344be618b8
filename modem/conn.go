package modem

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/isp-box/isp-box/internal/readahead"
)

// Conn is an answered call handed to PPP: the data path of the modem plus
// what is known about the call.
type Conn interface {
	// Read first returns the bytes the line already consumed while
	// detecting AutoPPP or a login (so a PPP frame sent right after
	// CONNECT is not lost), then what the modem sends. After carrier loss
	// or Close it returns an error (ErrCarrierLost, ErrClosed) within 1 s.
	// Write sends to the modem. Close hangs up.
	io.ReadWriteCloser
	Line() string     // line name, "ttyUSB0"
	Speed() int       // line rate from CONNECT, bit/s
	Protocol() string // "ARQ/V34/LAPM/V42BIS", "" if none
	CallerID() string // "" unless the modem reported one
	CallID() string   // the SIP call that rang the line, "" if unknown
}

// Errors a Conn returns.
var (
	ErrCarrierLost = errors.New("modem: carrier lost")
	ErrClosed      = errors.New("modem: connection closed")
)

// noCarrier is how a modem says the far side hung up, on ports where DCD
// cannot be read (ptys) or is ignored.
var noCarrier = []byte("NO CARRIER")

// conn is a Line's Conn. A pump goroutine moves the port's input to in,
// watching for NO CARRIER, and a DCD poller watches the pin where there is
// one; either cancels ctx with ErrCarrierLost.
type conn struct {
	line, protocol, callerID, callID string
	speed                            int
	p                                *port
	ctx                              context.Context
	cancel                           context.CancelCauseFunc
	in                               chan []byte

	// replay is what the line read before the session (AutoPPP and
	// login detection, the rest of a chunk): Read returns it first.
	replay readahead.Buffer

	// paused: a virtual modem is in online-command mode (after +++):
	// what the session writes is dropped, as a modem drops what the far
	// side sends while it talks to its DTE.
	paused atomic.Bool
}

var _ Conn = (*conn)(nil)

func (c *conn) Line() string     { return c.line }
func (c *conn) Speed() int       { return c.speed }
func (c *conn) Protocol() string { return c.protocol }
func (c *conn) CallerID() string { return c.callerID }
func (c *conn) CallID() string   { return c.callID }

func (c *conn) Read(b []byte) (int, error) {
	if n, ok := c.replay.Read(b); ok {
		return n, nil
	}
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	select {
	case chunk := <-c.in:
		n := copy(b, chunk)
		if n < len(chunk) {
			c.replay.Unread(chunk[n:])
		}
		return n, nil
	case <-c.ctx.Done():
		return 0, context.Cause(c.ctx)
	}
}

func (c *conn) Write(b []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	if c.paused.Load() {
		return len(b), nil
	}
	if err := c.p.write(b); err != nil {
		c.cancel(err)
		return 0, err
	}
	return len(b), nil
}

func (c *conn) Close() error {
	c.cancel(ErrClosed)
	return nil
}

// pump moves port input to the session until ctx ends. watchText makes it
// end the session on a NO CARRIER result in the data (ports without DCD).
// The last bytes of each chunk are kept so a result split across two reads
// is still seen.
func (c *conn) pump(watchText bool) {
	var tail []byte
	for {
		select {
		case b, ok := <-c.p.rx:
			if !ok {
				c.cancel(c.p.rxErr)
				return
			}
			if watchText {
				look := append(tail, b...)
				if bytes.Contains(look, noCarrier) {
					c.cancel(ErrCarrierLost)
					return
				}
				if len(look) > len(noCarrier) {
					look = look[len(look)-len(noCarrier):]
				}
				tail = append(tail[:0], look...)
			}
			select {
			case c.in <- b:
			case <-c.ctx.Done():
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}

// errAttr is err as a log attribute, or nothing when err is nil: a
// record says err=... only when something failed (slog handlers drop an
// empty Attr).
func errAttr(err error) slog.Attr {
	if err == nil {
		return slog.Attr{}
	}
	return slog.Any("err", err)
}
