package pppdvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isp-box/isp-box/internal/rawtty"
)

// BridgeToPTY copies bytes both ways between the guest's serial line and
// the pty at ptyPath (e.g. the client-line modem of the virtual ATA), so
// that the guest's chat talks AT to the modem behind that pty and pppd then
// runs over its connection. It opens the pty and puts it in raw mode before
// it returns an error or starts copying: without raw mode the line
// discipline echoes pppd's own frames back and pppd sees a looped-back
// link. It blocks until ctx is done or either side ends, and closes the pty
// (not the VM's serial socket) before it returns.
//
// Call it early: chat sends ATZ about 7 s after Start; bytes the guest
// writes before wait in the serial socket, but chat gives up after its
// 45 s timeout. Do not read Serial while a bridge runs.
func (v *VM) BridgeToPTY(ctx context.Context, ptyPath string) error {
	if v.serial == nil {
		return errNoSerial
	}
	f, err := os.OpenFile(ptyPath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("pppdvm: opening %s: %w", ptyPath, err)
	}
	if err := rawtty.MakeRaw(f); err != nil {
		f.Close()
		return fmt.Errorf("pppdvm: raw mode on %s: %w", ptyPath, err)
	}
	return bridge(ctx, v.serial, f)
}

// Bridge copies bytes both ways between the guest's serial line and f,
// e.g. the master side of a pty whose slave a virtual modem line opens as
// its serial port, until ctx is done or either side ends. It closes f.
func (v *VM) Bridge(ctx context.Context, f io.ReadWriteCloser) error {
	if v.serial == nil {
		f.Close()
		return errNoSerial
	}
	return bridge(ctx, v.serial, f)
}

// deadliner is the part of net.Conn bridge uses to unblock a read.
type deadliner interface {
	io.ReadWriter
	SetReadDeadline(time.Time) error
}

// bridge copies between conn and f until ctx ends or a side fails. It
// closes f; conn stays open (its read deadline is reset).
func bridge(ctx context.Context, conn deadliner, f io.ReadWriteCloser) error {
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	// The wrappers hide ReadFrom/WriteTo: os.File would splice(2) from the
	// socket, and a tty has no splice_write, so bytes would stick in the
	// kernel pipe in between. Plain reads and writes it is.
	go func() {
		defer wg.Done()
		_, err := io.Copy(struct{ io.Writer }{f}, struct{ io.Reader }{conn})
		errc <- fmt.Errorf("serial to pty: %w", eofIsEnd(err))
	}()
	go func() {
		defer wg.Done()
		_, err := io.Copy(struct{ io.Writer }{conn}, struct{ io.Reader }{f})
		errc <- fmt.Errorf("pty to serial: %w", eofIsEnd(err))
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Unblock both copies: closing f ends the pty side; a past deadline
	// ends the read on the socket, which stays usable afterwards.
	f.Close()
	conn.SetReadDeadline(time.Unix(1, 0))
	wg.Wait()
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("pppdvm: bridge: %w", err)
	}
	return nil
}

var errEnded = errors.New("stream ended")

func eofIsEnd(err error) error {
	if err == nil {
		return errEnded
	}
	return err
}
