package modem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// Errors of the port layer.
var (
	errTimeout  = errors.New("modem: timeout")
	errVanished = errors.New("modem: device vanished")
	errNoCTS    = errors.New("modem: CTS never rose: the modem is off or the cable/adapter has no RTS/CTS; refusing hardware flow control (set flow-control none to run without it)")
)

// caps is what a port can do, found out once at open.
type caps struct {
	modemLines bool // TIOCMGET works: DTR, DCD, CTS exist (not on a pty: ENOTTY)
	crtscts    bool // hardware flow control is on
}

func (c caps) String() string {
	s := "modem lines"
	if !c.modemLines {
		s = "pty: no DCD/DTR"
	}
	if c.crtscts {
		s += ", RTS/CTS"
	}
	return s
}

// port is an open serial device: go.bug.st/serial for data, plus a second
// fd (ctl) on the same tty for what serial v1.8.0 cannot do: CRTSCTS (it
// clears it at open), DTR by TIOCMBIC or speed B0, DCD by TIOCMGET. ctl is
// opened before serial.Open because that sets TIOCEXCL.
type port struct {
	path string // as configured
	real string // after symlinks: /dev/ttyUSB0, /dev/pts/3
	mode *serial.Mode
	sp   serial.Port
	ctl  int
	// data is ctl as an *os.File: reads and writes go through the Go
	// runtime's poller. serial v1.8.0's Read uses select(2), whose fd_set
	// holds only descriptors below 1024: a box with a few hundred lines
	// (or any process with many files open) would crash in it.
	data io.ReadWriteCloser
	// stream: the port is a byte stream (a TCP connection) with no tty
	// behind it: sp is nil, ctl -1, no DTR, no flushing beyond our queue.
	stream bool
	caps   caps
	clk    Clock
	// modemBits reads TIOCMGET on ctl; a seam so the RTS/CTS and DCD logic
	// can be tested without a UART.
	modemBits func() (int, error)

	rx      chan []byte // chunks read; closed on a read error
	rxErr   error       // valid once rx is closed; before that, read it with lastRxErr
	rxMu    sync.Mutex  // guards rxErr for lastRxErr
	pending []byte      // read but not consumed; owned by the line goroutine

	wq        chan writeReq
	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

type writeReq struct {
	b    []byte
	done chan error
}

// writeTimeout bounds one write: with RTS/CTS and a dead modem a write would
// otherwise block forever; on timeout the port is closed, which unblocks it.
const writeTimeout = 10 * time.Second

// openPort opens path the way mgetty's mg_get_device does: O_NOCTTY, raw,
// 8N1 at speed, hardware flow control if asked for (refused when CTS is low
// for ctsWait), owner/group/mode applied.
func openPort(ctx context.Context, cfg LineConfig, ctsWait time.Duration, clk Clock) (*port, error) {
	real, err := filepath.EvalSymlinks(cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("modem: %s: %w%s", cfg.Device, err, openHint(cfg.Device, err))
	}
	ctl, err := unix.Open(real, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("modem: open %s: %w%s", real, err, openHint(real, err))
	}
	mode := &serial.Mode{BaudRate: cfg.Speed, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}
	if mode.BaudRate == 0 {
		mode.BaudRate = 38400
	}
	sp, err := serial.Open(real, mode)
	if err != nil {
		unix.Close(ctl)
		return nil, fmt.Errorf("modem: open %s: %w", real, err)
	}
	p := &port{path: cfg.Device, real: real, mode: mode, sp: sp, ctl: ctl, data: os.NewFile(uintptr(ctl), real), clk: clk,
		rx: make(chan []byte, 64), wq: make(chan writeReq), closed: make(chan struct{})}
	p.modemBits = func() (int, error) { return unix.IoctlGetInt(ctl, unix.TIOCMGET) }
	// A pty answers ENOTTY: no modem-control lines. Found out once; the
	// line then drops DTR by B0 and takes carrier from NO CARRIER.
	if _, err := p.modemBits(); err == nil {
		p.caps.modemLines = true
	}
	if cfg.FlowControl == "hard" && !cfg.Local {
		if err := p.enableCRTSCTS(ctx, ctsWait); err != nil {
			p.close()
			return nil, err
		}
	}
	p.wg.Add(2)
	go p.reader()
	go p.writer()
	return p, nil
}

// streamPort makes a port of a byte stream (a TCP connection): the same
// reader, writer and line reading as a tty, without the tty.
func streamPort(name string, rw io.ReadWriteCloser, clk Clock) *port {
	p := &port{path: name, real: name, data: rw, stream: true, ctl: -1, clk: clk,
		rx: make(chan []byte, 64), wq: make(chan writeReq), closed: make(chan struct{})}
	p.modemBits = func() (int, error) { return 0, errors.New("modem: a stream has no modem lines") }
	p.wg.Add(2)
	go p.reader()
	go p.writer()
	return p
}

// enableCRTSCTS sets hardware flow control on the tty through ctl. Where the
// port has modem lines, CTS must be up (the modem is on and the cable carries
// it) within wait, or every write would block forever.
func (p *port) enableCRTSCTS(ctx context.Context, wait time.Duration) error {
	if p.caps.modemLines {
		deadline := p.clk.Now().Add(wait)
		for {
			st, err := p.modemBits()
			if err != nil {
				return fmt.Errorf("modem: TIOCMGET: %w", err)
			}
			if st&unix.TIOCM_CTS != 0 {
				break
			}
			if p.clk.Now().After(deadline) {
				return errNoCTS
			}
			t := p.clk.NewTimer(50 * time.Millisecond)
			select {
			case <-t.C():
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	t, err := unix.IoctlGetTermios(p.ctl, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("modem: TCGETS: %w", err)
	}
	t.Cflag |= unix.CRTSCTS
	if err := unix.IoctlSetTermios(p.ctl, unix.TCSETS, t); err != nil {
		return fmt.Errorf("modem: set CRTSCTS: %w", err)
	}
	p.caps.crtscts = true
	return nil
}

// applyOwnership is mgetty's port-owner/port-group/port-mode.
func applyOwnership(path string, cfg LineConfig) error {
	uid, gid := -1, -1
	if cfg.PortOwner != "" {
		u, err := user.Lookup(cfg.PortOwner)
		if err != nil {
			return fmt.Errorf("modem: port-owner %q: %w", cfg.PortOwner, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	if cfg.PortGroup != "" {
		g, err := user.LookupGroup(cfg.PortGroup)
		if err != nil {
			return fmt.Errorf("modem: port-group %q: %w", cfg.PortGroup, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Chown(path, uid, gid); err != nil {
			return fmt.Errorf("modem: chown %s: %w", path, err)
		}
	}
	if cfg.PortMode != 0 {
		if err := os.Chmod(path, cfg.PortMode); err != nil {
			return fmt.Errorf("modem: chmod %s: %w", path, err)
		}
	}
	return nil
}

func (p *port) reader() {
	defer p.wg.Done()
	defer close(p.rx)
	for {
		buf := make([]byte, 2048)
		n, err := p.data.Read(buf)
		if n > 0 {
			select {
			case p.rx <- buf[:n]:
			case <-p.closed:
				p.setRxErr(errClosedPort)
				return
			}
		}
		if err != nil {
			select {
			case <-p.closed:
				p.setRxErr(errClosedPort)
			default:
				// Unplugged USB: a zero-length read (serial's PortClosed),
				// EIO or ENODEV.
				p.setRxErr(fmt.Errorf("%w: read %s: %w", errVanished, p.real, err))
			}
			return
		}
	}
}

var errClosedPort = errors.New("modem: port closed")

func (p *port) setRxErr(err error) {
	p.rxMu.Lock()
	p.rxErr = err
	p.rxMu.Unlock()
}

// lastRxErr is the reader's error so far, for a caller that has not seen
// rx closed (the race detector caught a TCP line reading rxErr while the
// reader was still writing it).
func (p *port) lastRxErr() error {
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	return p.rxErr
}

func (p *port) writer() {
	defer p.wg.Done()
	for {
		select {
		case r := <-p.wq:
			_, err := p.data.Write(r.b)
			if err != nil {
				err = fmt.Errorf("%w: write %s: %w", errVanished, p.real, err)
			}
			r.done <- err
		case <-p.closed:
			return
		}
	}
}

// write sends b with a deadline.
func (p *port) write(b []byte) error {
	r := writeReq{b: b, done: make(chan error, 1)}
	t := time.NewTimer(writeTimeout)
	defer t.Stop()
	select {
	case p.wq <- r:
	case <-p.closed:
		return errClosedPort
	case <-t.C:
		return fmt.Errorf("modem: write to %s blocked (flow control?): %w", p.real, errTimeout)
	}
	select {
	case err := <-r.done:
		return err
	case <-t.C:
		p.close() // unblocks the write
		return fmt.Errorf("modem: write to %s blocked %s (CTS low?): %w", p.real, writeTimeout, errVanished)
	}
}

// readLine returns the next non-empty line (CR or LF ends it) within d.
func (p *port) readLine(ctx context.Context, d time.Duration) (string, error) {
	t := p.clk.NewTimer(d)
	defer t.Stop()
	for {
		for {
			i := bytes.IndexAny(p.pending, "\r\n")
			if i < 0 {
				break
			}
			line := string(p.pending[:i])
			p.pending = p.pending[i+1:]
			if line != "" {
				return line, nil
			}
		}
		select {
		case b, ok := <-p.rx:
			if !ok {
				return "", p.rxErr
			}
			p.pending = append(p.pending, b...)
		case <-t.C():
			return "", errTimeout
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// flush discards input: what the kernel holds, what the reader passed on,
// what is pending. Stale NO CARRIER or OK must not answer the next command.
func (p *port) flush() error {
	if p.stream {
		p.pending = nil
		return nil // what arrived is the caller's, not a modem's stale reply
	}
	if err := p.sp.ResetInputBuffer(); err != nil {
		return fmt.Errorf("%w: flush %s: %w", errVanished, p.real, err)
	}
	p.pending = nil
	for {
		select {
		case _, ok := <-p.rx:
			if !ok {
				return p.rxErr
			}
		default:
			return nil
		}
	}
}

// setDTR raises or drops DTR: TIOCMBIS/TIOCMBIC where the port has modem
// lines, otherwise the POSIX way, output speed B0 (raising restores the
// configured speed).
func (p *port) setDTR(on bool) error {
	if p.stream {
		return nil
	}
	if p.caps.modemLines {
		req := uint(unix.TIOCMBIC)
		if on {
			req = unix.TIOCMBIS
		}
		if err := unix.IoctlSetPointerInt(p.ctl, req, unix.TIOCM_DTR); err != nil {
			return fmt.Errorf("%w: DTR on %s: %w", errVanished, p.real, err)
		}
		return nil
	}
	if on {
		if err := p.sp.SetMode(p.mode); err != nil {
			return fmt.Errorf("%w: restore speed on %s: %w", errVanished, p.real, err)
		}
		return nil
	}
	t, err := unix.IoctlGetTermios(p.ctl, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("%w: TCGETS %s: %w", errVanished, p.real, err)
	}
	t.Cflag = t.Cflag&^unix.CBAUD | unix.B0
	t.Ispeed, t.Ospeed = 0, 0
	if err := unix.IoctlSetTermios(p.ctl, unix.TCSETS, t); err != nil {
		return fmt.Errorf("%w: B0 on %s: %w", errVanished, p.real, err)
	}
	return nil
}

// dcd reads carrier detect; ok is false on ports without modem lines.
func (p *port) dcd() (on, ok bool, err error) {
	if !p.caps.modemLines {
		return false, false, nil
	}
	st, err := p.modemBits()
	if err != nil {
		return false, true, fmt.Errorf("%w: TIOCMGET %s: %w", errVanished, p.real, err)
	}
	return st&unix.TIOCM_CD != 0, true, nil
}

// outq is the number of bytes in the tty's output queue (TIOCOUTQ); 0
// when it cannot be read.
func (p *port) outq() int {
	if p.stream {
		return 0
	}
	n, err := unix.IoctlGetInt(p.ctl, unix.TIOCOUTQ)
	if err != nil {
		return 0
	}
	return n
}

// setSpeed changes the DTE speed (mgetty's autobauding: the speed of the
// CONNECT); restoreSpeed goes back to the configured one.
func (p *port) setSpeed(bps int) error {
	if p.stream {
		return nil
	}
	m := *p.mode
	m.BaudRate = bps
	if err := p.sp.SetMode(&m); err != nil {
		return fmt.Errorf("modem: autobauding to %d: %w", bps, err)
	}
	return nil
}

func (p *port) restoreSpeed() error {
	if p.stream {
		return nil
	}
	if err := p.sp.SetMode(p.mode); err != nil {
		return fmt.Errorf("%w: restore speed on %s: %w", errVanished, p.real, err)
	}
	return nil
}

func (p *port) close() {
	p.closeOnce.Do(func() {
		close(p.closed)
		if p.sp != nil {
			p.sp.Close()
		}
		p.data.Close() // closes ctl (or the stream)

	})
}

// wait waits for the reader and writer after close.
func (p *port) wait() { p.wg.Wait() }
