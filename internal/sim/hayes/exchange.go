package hayes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/isp-box/isp-box/internal/sim/phone"
)

// Exchange is a tiny in-memory telephone exchange for tests: numbers map to
// Ringers (emulated modems), and a Line obtained from it dials them. An
// answered call is joined by a buffered in-memory pipe (the Carrier), so two
// emulated modems can call each other without the virtual ATA.
type Exchange struct {
	// Speed is the line rate both carriers report; 0 means 28800.
	Speed int
	// NoErrorControl makes the carriers say their data path has no error
	// control (as a softmodem call's), so the modems' CONNECT omits ARQ.
	NoErrorControl bool

	mu      sync.Mutex
	numbers map[string]phone.Ringer
}

// NewExchange returns an empty exchange.
func NewExchange() *Exchange { return &Exchange{numbers: map[string]phone.Ringer{}} }

// Attach plugs r in at number (replacing whatever was there).
func (x *Exchange) Attach(number string, r phone.Ringer) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.numbers[number] = r
}

// Line returns the phone line of a subscriber whose calls show callerID.
func (x *Exchange) Line(callerID string) phone.Line { return &exLine{x: x, from: callerID} }

type exLine struct {
	x    *Exchange
	from string
}

// Dial rings number and waits for an answer, a rejection (BUSY) or ctx.
func (l *exLine) Dial(ctx context.Context, number string) (phone.Carrier, error) {
	l.x.mu.Lock()
	r, ok := l.x.numbers[number]
	speed, noEC := l.x.Speed, l.x.NoErrorControl
	l.x.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("exchange: %s is not connected: %w", number, phone.ErrNoCarrier)
	}
	if speed == 0 {
		speed = DefaultSpeed
	}
	c := &exCall{from: l.from, speed: speed, noEC: noEC, answered: make(chan phone.Carrier, 1), rejected: make(chan struct{}), gone: make(chan struct{})}
	r.Incoming(c)
	select {
	case car := <-c.answered:
		return car, nil
	case <-c.rejected:
		return nil, phone.ErrBusy
	case <-ctx.Done():
		c.giveUp()
		// The callee may have answered in the same instant: hang that up.
		select {
		case car := <-c.answered:
			car.Close()
		default:
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, phone.ErrNoAnswer
		}
		return nil, ctx.Err()
	}
}

type exCall struct {
	from     string
	speed    int
	noEC     bool
	answered chan phone.Carrier // the caller's end, sent once
	rejected chan struct{}
	gone     chan struct{}

	mu   sync.Mutex
	done bool // answered, rejected or given up
}

func (c *exCall) CallerID() string      { return c.from }
func (c *exCall) Gone() <-chan struct{} { return c.gone }

func (c *exCall) finish() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return false
	}
	c.done = true
	return true
}

func (c *exCall) giveUp() {
	if c.finish() {
		close(c.gone)
	}
}

func (c *exCall) Reject() {
	if c.finish() {
		close(c.rejected)
	}
}

func (c *exCall) Answer(ctx context.Context) (phone.Carrier, error) {
	if !c.finish() {
		return nil, phone.ErrNoCarrier
	}
	a, b := pipe(c.speed, !c.noEC)
	c.answered <- a
	return b, nil
}

// Pipe returns the two ends of an in-memory carrier: what one end writes the
// other reads. Writes never block on the reader (a generous buffer stands in
// for the line); Close on either end hangs up both: the other end's Read
// returns io.EOF once it has read what was already sent.
func Pipe(speed int) (phone.Carrier, phone.Carrier) { return pipe(speed, true) }

func pipe(speed int, ec bool) (phone.Carrier, phone.Carrier) {
	ab, ba := make(chan []byte, 4096), make(chan []byte, 4096)
	done := make(chan struct{})
	once := new(sync.Once)
	return &pipeEnd{rx: ba, tx: ab, done: done, once: once, speed: speed, ec: ec},
		&pipeEnd{rx: ab, tx: ba, done: done, once: once, speed: speed, ec: ec}
}

type pipeEnd struct {
	rx      <-chan []byte
	tx      chan<- []byte
	done    chan struct{}
	once    *sync.Once
	speed   int
	ec      bool
	pending []byte // only the reader touches it
}

var _ phone.ErrorControl = (*pipeEnd)(nil)

func (p *pipeEnd) Speed() int { return p.speed }

// ErrorControlled is what the exchange was told: the pipe itself loses nothing.
func (p *pipeEnd) ErrorControlled() bool { return p.ec }

func (p *pipeEnd) Read(b []byte) (int, error) {
	if len(p.pending) == 0 {
		select {
		case p.pending = <-p.rx:
		case <-p.done:
			select {
			case p.pending = <-p.rx:
			default:
				return 0, io.EOF
			}
		}
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n, nil
}

func (p *pipeEnd) Write(b []byte) (int, error) {
	select {
	case <-p.done:
		return 0, io.ErrClosedPipe
	default:
	}
	select {
	case p.tx <- append([]byte(nil), b...):
		return len(b), nil
	case <-p.done:
		return 0, io.ErrClosedPipe
	}
}

func (p *pipeEnd) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}
