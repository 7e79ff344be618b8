// Package phone is the analog telephone line between an emulated modem
// (internal/sim/hayes) and what its jack is plugged into: a port of the
// virtual ATA (internal/sim/ata), or an in-memory exchange in tests.
//
// The modem side dials through a Line and is rung through a Ringer; once a
// call is answered both modems hold a Carrier, the data path between them.
package phone

import (
	"context"
	"errors"
	"io"
)

// Errors a Dial reports; the modem turns them into Hayes result codes.
var (
	ErrBusy       = errors.New("phone: busy")        // BUSY
	ErrNoAnswer   = errors.New("phone: no answer")   // NO ANSWER
	ErrNoCarrier  = errors.New("phone: no carrier")  // NO CARRIER: rejected, unreachable, failed
	ErrNoDialtone = errors.New("phone: no dialtone") // NO DIALTONE: the line is not up (ATA not registered)
)

// Carrier is the data path of an answered call, modem to modem. Write sends
// bytes to the far modem; Read returns what it sent. Read returns io.EOF once
// the far side hung up. Close hangs up. Speed is the line rate both modems
// report in CONNECT, in bit/s.
type Carrier interface {
	io.ReadWriteCloser
	Speed() int
}

// ErrorControl is implemented by a Carrier that knows whether its data path
// is error-controlled, as a V.42 (LAPM) link is: a Carrier without the
// method is (the virtual ATA's data mode and the in-memory pipe lose
// nothing). A modem reports ARQ in its CONNECT line only for one that is.
type ErrorControl interface {
	ErrorControlled() bool
}

// Line is what a modem's jack is plugged into.
type Line interface {
	// Dial places a call to number and blocks until the far side answers
	// (a Carrier), fails (one of the errors above), or ctx ends.
	Dial(ctx context.Context, number string) (Carrier, error)
}

// Call is an incoming call, ringing at a modem.
type Call interface {
	// CallerID is the calling number, "" if unknown.
	CallerID() string
	// Answer takes the call off hook and returns the carrier once both
	// modems have trained.
	Answer(ctx context.Context) (Carrier, error)
	// Reject refuses the call (the modem is busy, or ATH while ringing).
	Reject()
	// Gone is closed when the caller gave up before the call was answered.
	Gone() <-chan struct{}
}

// Ringer is the modem side of a line: the line calls Incoming when a call
// arrives. Incoming must not block; the modem rings until it answers, the
// call is Gone, or it rejects it.
type Ringer interface {
	Incoming(c Call)
}
