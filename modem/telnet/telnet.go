// Package telnet is the server side of a Telnet connection (RFC 854) as
// modem emulators and dial-up clients over TCP use it: 8-bit clean with
// BINARY (RFC 856) both ways, SUPPRESS-GO-AHEAD (RFC 858), and ECHO (RFC
// 857) offered by the server so the client does not echo locally. IAC is
// doubled on the way out and undoubled on the way in, so PPP frames (any
// byte value) pass unharmed; negotiation and subnegotiation are taken out of
// the data. The option exchange follows RFC 1143's rule that a request for
// the state an option is already in is not answered, so two sides cannot
// loop; a peer that floods negotiations anyway is cut off (ErrFlood).
//
// A server also copes with a peer that only claims to speak Telnet: qemu's
// `-chardev socket,...,telnet=on` in client mode (chardev/char-socket.c
// negotiates as a server only) and emulators set to "telnet" that send a
// raw stream. Such a peer sooner or later sends IAC followed by a byte that
// is no Telnet command (a PPP frame starts 7e ff 7d 23), which no Telnet
// peer sends (RFC 854 gives it no meaning), so the server takes the peer
// for a raw one: from there on nothing is parsed or doubled either way (see
// Raw). It may have looked like a Telnet peer before: a guest's tty still
// in cooked mode echoes the server's own negotiation back.
package telnet

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Telnet commands and options (RFC 854, 856, 857, 858).
const (
	IAC  = 255
	DONT = 254
	DO   = 253
	WONT = 252
	WILL = 251
	SB   = 250
	SE   = 240

	OptBinary = 0
	OptEcho   = 1
	OptSGA    = 3
)

// ErrFlood ends a connection whose peer sends more negotiation than any
// client needs.
var ErrFlood = errors.New("telnet: option negotiation flood")

// MaxNegotiations bounds the commands (DO/DONT/WILL/WONT/SB) one
// connection may send; real clients send a few dozen at most.
const MaxNegotiations = 500

// maxSub bounds one subnegotiation's length (terminal type, window size
// are a few bytes).
const maxSub = 512

// Conn is a Telnet server connection on rw. Read and Write may be called
// from different goroutines.
type Conn struct {
	rw io.ReadWriteCloser

	wmu sync.Mutex // serialises writes: data and negotiation replies

	// Read side state; owned by the reader.
	st     int // parser state
	cmd    byte
	sub    int
	n      int       // negotiations seen
	us     [256]bool // options enabled on our side
	him    [256]bool // options enabled on the peer's side
	buf    []byte
	out    []byte
	crSeen bool
	client bool // the box calls a Telnet host (a BBS): the host echoes

	raw atomic.Bool // the peer speaks no Telnet: bytes pass as they are
	// OnRaw, if set before the first Read, is called once (from Read) when
	// the connection falls back to raw, with the byte that followed IAC.
	OnRaw func(after byte)
}

// Parser states.
const (
	stData = iota
	stIAC
	stOpt
	stSub
	stSubIAC
)

// Server wraps rw and offers what a modem line needs: it will echo and
// suppress go-ahead, and asks for binary both ways.
func Server(rw io.ReadWriteCloser) (*Conn, error) {
	c := &Conn{rw: rw, buf: make([]byte, 4096)}
	// Options offered are marked on at once: a DO in reply is then not
	// answered again (RFC 1143), a DONT turns them off.
	c.us[OptEcho], c.us[OptSGA], c.us[OptBinary] = true, true, true
	c.him[OptBinary], c.him[OptSGA] = true, true
	_, err := c.writeRaw([]byte{IAC, WILL, OptEcho, IAC, WILL, OptSGA, IAC, DO, OptSGA, IAC, WILL, OptBinary, IAC, DO, OptBinary})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Client wraps rw as the calling side (the box bridging a caller to a BBS):
// binary both ways and go-ahead suppressed are asked for; the host's echo
// is accepted, ours is refused.
func Client(rw io.ReadWriteCloser) (*Conn, error) {
	c := &Conn{rw: rw, buf: make([]byte, 4096), client: true}
	c.us[OptBinary] = true
	c.him[OptBinary], c.him[OptSGA] = true, true
	if _, err := c.writeRaw([]byte{IAC, WILL, OptBinary, IAC, DO, OptBinary, IAC, DO, OptSGA}); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Conn) writeRaw(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.rw.Write(b)
}

// Raw reports whether the connection fell back to a raw stream: the peer
// sent IAC and then a byte that is no Telnet command.
func (c *Conn) Raw() bool { return c.raw.Load() }

// Write sends data with every IAC doubled (as it is, once Raw).
func (c *Conn) Write(b []byte) (int, error) {
	if c.raw.Load() {
		return c.writeRaw(b)
	}
	out := make([]byte, 0, len(b)+8)
	for _, x := range b {
		out = append(out, x)
		if x == IAC {
			out = append(out, IAC)
		}
	}
	if _, err := c.writeRaw(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.rw.Close() }

// Read returns data with the Telnet commands taken out. It does not return
// (0, nil) for a chunk that held only commands: it reads on.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		n, err := c.rw.Read(c.buf)
		if n > 0 && c.raw.Load() {
			c.out = append(c.out[:0], c.buf[:n]...)
			continue
		}
		if n > 0 {
			data, replies, perr := c.parse(c.buf[:n])
			c.out = data
			if len(replies) > 0 {
				if _, werr := c.writeRaw(replies); werr != nil && perr == nil {
					perr = werr
				}
			}
			if perr != nil {
				return 0, perr
			}
			if len(c.out) > 0 {
				continue
			}
		}
		if err != nil {
			return 0, err
		}
	}
}

// parse takes the commands out of in: data for the reader, replies to
// send back.
func (c *Conn) parse(in []byte) (data, replies []byte, err error) {
	for i, x := range in {
		switch c.st {
		case stData:
			if x == IAC {
				c.st = stIAC
				continue
			}
			// RFC 854: CR NUL is a bare CR when the peer is not in binary.
			if x == 0 && c.crSeen && !c.him[OptBinary] {
				c.crSeen = false
				continue
			}
			c.crSeen = x == '\r'
			data = append(data, x)
		case stIAC:
			switch x {
			case IAC:
				data = append(data, IAC)
				c.st = stData
			case DO, DONT, WILL, WONT:
				c.cmd, c.st = x, stOpt
			case SB:
				c.sub, c.st = 0, stSub
				c.n++
			default:
				if x < SE && !c.client {
					// No Telnet peer: the rest is data, as it came.
					c.raw.Store(true)
					c.st = stData
					if c.OnRaw != nil {
						c.OnRaw(x)
					}
					return append(append(data, IAC), in[i:]...), replies, nil
				}
				// NOP, GA, AYT, BRK, IP...: nothing to do on a data line
				c.st = stData
			}
		case stOpt:
			c.st = stData
			c.n++
			replies = append(replies, c.negotiate(c.cmd, x)...)
		case stSub:
			c.sub++
			if c.sub > maxSub {
				return data, replies, ErrFlood
			}
			if x == IAC {
				c.st = stSubIAC
			}
		case stSubIAC:
			if x == SE {
				c.st = stData
			} else {
				c.st = stSub
			}
		}
		if c.n > MaxNegotiations {
			return data, replies, ErrFlood
		}
	}
	return data, replies, nil
}

// negotiate answers one option command (RFC 1143, simplified: no queue).
func (c *Conn) negotiate(cmd, opt byte) []byte {
	supported := opt == OptBinary || opt == OptSGA || opt == OptEcho && !c.client
	switch cmd {
	case DO: // the peer asks us to enable opt
		if c.us[opt] {
			return nil
		}
		if supported {
			c.us[opt] = true
			return []byte{IAC, WILL, opt}
		}
		return []byte{IAC, WONT, opt}
	case DONT:
		if !c.us[opt] {
			return nil
		}
		c.us[opt] = false
		return []byte{IAC, WONT, opt}
	case WILL: // the peer offers to enable opt
		if c.him[opt] {
			return nil
		}
		if opt == OptBinary || opt == OptSGA || opt == OptEcho && c.client {
			c.him[opt] = true
			return []byte{IAC, DO, opt}
		}
		return []byte{IAC, DONT, opt}
	case WONT:
		if !c.him[opt] {
			return nil
		}
		c.him[opt] = false
		return []byte{IAC, DONT, opt}
	}
	return nil
}

// Negotiations is how many option commands the peer has sent.
func (c *Conn) Negotiations() int { return c.n }
