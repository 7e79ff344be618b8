// Package hayes is an emulated Hayes modem behind a pseudo-terminal: a USR
// Sportster 28800 as far as the AT dialogue goes. The line manager (package
// modem) opens its pty exactly as it opens /dev/ttyUSB0, so the whole answer
// path runs on a real tty without hardware.
//
// What it does: command mode with echo (E), quiet (Q), verbose/numeric
// results (V), result subsets (X0..X4, &A0..&A3), S-registers (S0 auto-answer,
// S1 ring count, S2 escape char, S3/S4/S5 CR/LF/BS, S7 carrier wait, S12 guard
// time, any other register stored), ATZ, AT&F, ATI, ATA, ATD/ATDT/ATDP through
// a phone.Line, ATH, ATO, A/; RING cadence when a call comes (phone.Ringer);
// CONNECT strings; the "+++" escape with guard time; NO CARRIER when the far
// side hangs up.
//
// DTR. A pty has no modem-control lines (TIOCMGET/TIOCMBIS fail with ENOTTY on
// the slave). The POSIX way to drop DTR is to set the output speed to B0, and
// on Linux a TCGETS on the master returns the slave's termios, so the emulator
// polls the slave's speed: B0 is "DTR low", anything else "DTR high", acted on
// per &D (&D2 hang up, &D3 hang up and reset). Closing the slave is not seen:
// the emulator keeps a slave fd of its own open so that the master never
// reads EIO between two openers.
//
// Carrier detect has no pin either: the far side hanging up shows as the
// verbose or numeric NO CARRIER result, which is what the line manager
// watches for on ports without DCD.
package hayes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isp-box/isp-box/internal/sim/phone"
	"github.com/isp-box/isp-box/modem/at"
)

// DefaultSpeed is the line rate of a Sportster 28800 call.
const DefaultSpeed = 28800

// DefaultRingInterval is the North American ring cadence: 2 s on, 4 s off.
const DefaultRingInterval = 6 * time.Second

// Options configure a Modem.
type Options struct {
	// Link, if set, is a symlink created (atomically replaced) to point at
	// the pty slave: the stable device path, like /dev/serial/by-id/...
	Link string
	// Phone is the line the modem's jack is plugged into, for ATD. Nil: no
	// dial tone.
	Phone phone.Line
	// RingInterval is the time between RING results; 0 means 6 s.
	RingInterval time.Duration
	// MaxSpeed caps the CONNECT rate; 0 means 28800.
	MaxSpeed int
	// DTRPoll is how often the slave's speed is checked for B0; 0 means 20 ms.
	DTRPoll time.Duration
	// Log may be nil.
	Log *slog.Logger
	// Name labels log lines.
	Name string
}

type mode int

const (
	modeCommand   mode = iota // no carrier: AT commands
	modeOnline                // carrier up, data passes
	modeOnlineCmd             // carrier up, escaped with +++: AT commands
)

// Modem is one emulated modem. Its state is owned by one goroutine (run);
// every input (pty bytes, far-side bytes, rings, test controls) reaches it as
// a closure on ev.
type Modem struct {
	opts Options
	log  *slog.Logger

	ev   chan func()
	done chan struct{}
	wg   sync.WaitGroup

	// Owned by the run goroutine:
	pt        *ptyPair
	mode      mode
	at        *at.Engine // the AT dialogue, shared with the box's virtual modem
	silent    bool
	dtrLow    bool
	ringing   phone.Call
	ringTimer *time.Timer
	ringStop  chan struct{}
	pending   *attempt // dial or answer in progress
	carrier   phone.Carrier
	carrierTx chan []byte
	esc       at.Escape
	escTimer  *time.Timer
}

// sportster is what ATIn answers (I0 product code, I3 firmware banner, I7
// configuration); the exact USR strings are approximated.
var sportster = at.Profile{Ident: map[int]string{
	0: "2886",
	1: "OK", // checksum test passes
	3: "USRobotics Sportster 28800 Fax",
	7: "Product type           US/Canada External\r\nProduct ID:            00568601\r\nOptions                V32bis,V.34,V.FC\r\nFax Options            Class 1/Class 2.0",
}}

// ptyPair is one incarnation of the pty (Vanish/Restore make a new one).
type ptyPair struct {
	master, slave *os.File
	out           chan []byte // to the DTE, drained by a writer goroutine
	stop          chan struct{}
}

// New creates the pty, the link, and starts the modem.
func New(opts Options) (*Modem, error) {
	if opts.RingInterval == 0 {
		opts.RingInterval = DefaultRingInterval
	}
	if opts.MaxSpeed == 0 {
		opts.MaxSpeed = DefaultSpeed
	}
	if opts.DTRPoll == 0 {
		opts.DTRPoll = 20 * time.Millisecond
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Modem{opts: opts, log: log.With("comp", "hayes", "modem", opts.Name), ev: make(chan func(), 256), done: make(chan struct{}), at: at.NewEngine(sportster)}
	p, err := m.openPty()
	if err != nil {
		return nil, err
	}
	m.pt = p
	m.wg.Add(1)
	go m.run()
	return m, nil
}

// Path is the device path to open: Link if set, else the slave's /dev/pts/N.
func (m *Modem) Path() string {
	if m.opts.Link != "" {
		return m.opts.Link
	}
	var s string
	m.do(func() {
		if m.pt != nil {
			s = m.pt.slave.Name()
		}
	})
	return s
}

// Close hangs up and removes the pty and link.
func (m *Modem) Close() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	m.do(func() {
		m.hangup(false)
		m.stopRinging()
		m.closePty()
	})
	close(m.done)
	m.wg.Wait()
	return nil
}

// do runs f on the modem goroutine and waits for it.
func (m *Modem) do(f func()) {
	ch := make(chan struct{})
	select {
	case m.ev <- func() { f(); close(ch) }:
		select {
		case <-ch:
		case <-m.done:
		}
	case <-m.done:
	}
}

// post queues f for the modem goroutine without waiting.
func (m *Modem) post(f func()) {
	select {
	case m.ev <- f:
	case <-m.done:
	}
}

func (m *Modem) run() {
	defer m.wg.Done()
	tick := time.NewTicker(m.opts.DTRPoll)
	defer tick.Stop()
	for {
		select {
		case f := <-m.ev:
			f()
		case <-tick.C:
			m.pollDTR()
		case <-m.done:
			return
		}
	}
}

// ---- test controls ----

// Incoming implements phone.Ringer: a call arrives at the jack.
func (m *Modem) Incoming(c phone.Call) {
	m.post(func() { m.incoming(c) })
}

// DropCarrier makes the far side vanish: the carrier is closed and the DTE
// gets NO CARRIER, as when the caller hangs up.
func (m *Modem) DropCarrier() {
	m.do(func() {
		if m.carrier != nil {
			m.hangup(true)
		}
	})
}

// GoSilent makes the modem stop answering anything (a hung firmware) or
// brings it back.
func (m *Modem) GoSilent(silent bool) {
	m.do(func() {
		m.silent = silent
		m.at.Reset()
	})
}

// Vanish unplugs the modem: the call is dropped, the pty closed (the line
// manager's reads fail with EIO) and the link removed (opens fail ENOENT).
func (m *Modem) Vanish() error {
	var err error
	m.do(func() {
		m.hangup(false)
		m.stopRinging()
		m.closePty()
	})
	return err
}

// Restore plugs the modem back in: a new pty behind the same link, factory
// settings, as after a power cycle.
func (m *Modem) Restore() error {
	var err error
	m.do(func() {
		if m.pt != nil {
			return
		}
		var p *ptyPair
		p, err = m.openPty()
		if err == nil {
			m.pt = p
			m.at.Factory()
			m.dtrLow = false
		}
	})
	return err
}

// Online reports whether a carrier is up.
func (m *Modem) Online() bool {
	var on bool
	m.do(func() { on = m.carrier != nil })
	return on
}

// Reg returns S-register n.
func (m *Modem) Reg(n int) int {
	var v int
	m.do(func() { v = m.at.Regs[n&0xff] })
	return v
}

// ---- pty ----

func (m *Modem) openPty() (*ptyPair, error) {
	master, slave, err := openpt()
	if err != nil {
		return nil, fmt.Errorf("hayes: open pty: %w", err)
	}
	// Raw slave from the start: otherwise its line discipline would echo
	// our own results back to us before the line manager sets raw mode.
	if err := control(slave, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		return unix.IoctlSetTermios(fd, unix.TCSETS, t)
	}); err != nil {
		master.Close()
		slave.Close()
		return nil, fmt.Errorf("hayes: raw slave: %w", err)
	}
	if m.opts.Link != "" {
		tmp := m.opts.Link + ".new"
		os.Remove(tmp)
		if err := os.Symlink(slave.Name(), tmp); err != nil {
			master.Close()
			slave.Close()
			return nil, fmt.Errorf("hayes: link: %w", err)
		}
		if err := os.Rename(tmp, m.opts.Link); err != nil {
			master.Close()
			slave.Close()
			return nil, fmt.Errorf("hayes: link: %w", err)
		}
	}
	p := &ptyPair{master: master, slave: slave, out: make(chan []byte, 1024), stop: make(chan struct{})}
	m.wg.Add(2)
	go m.readPty(p)
	go m.writePty(p)
	m.log.Debug("pty up", "slave", slave.Name(), "link", m.opts.Link)
	return p, nil
}

// openpt opens a pty pair. Not creack/pty: its Open calls File.Fd on the
// master, which switches it to blocking mode, and then Close cannot
// interrupt a pending Read — the master would stay open and the slave never
// see the hang-up that Vanish is for. Opened O_NONBLOCK, the master goes
// through the runtime poller.
func openpt() (master, slave *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0) // unlockpt
	}
	if err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	slave, err = os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (m *Modem) closePty() {
	p := m.pt
	if p == nil {
		return
	}
	m.pt = nil
	close(p.stop)
	if m.opts.Link != "" {
		if dst, err := os.Readlink(m.opts.Link); err == nil && dst == p.slave.Name() {
			os.Remove(m.opts.Link)
		}
	}
	p.master.Close()
	p.slave.Close()
	m.log.Debug("pty gone", "slave", p.slave.Name())
}

func (m *Modem) readPty(p *ptyPair) {
	defer m.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := p.master.Read(buf)
		if n > 0 {
			b := append([]byte(nil), buf[:n]...)
			now := time.Now()
			m.post(func() {
				if m.pt == p {
					m.input(b, now)
				}
			})
		}
		if err != nil {
			select {
			case <-p.stop:
				return
			case <-m.done:
				return
			default:
			}
			if errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			// EIO with no slave open cannot happen (we hold one); any
			// other error: back off briefly rather than spin.
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (m *Modem) writePty(p *ptyPair) {
	defer m.wg.Done()
	for {
		select {
		case b := <-p.out:
			if _, err := p.master.Write(b); err != nil {
				return
			}
		case <-p.stop:
			return
		case <-m.done:
			return
		}
	}
}

// send queues bytes to the DTE; a full queue drops them, like an overrun.
func (m *Modem) send(b []byte) {
	if m.pt == nil || m.silent {
		return
	}
	select {
	case m.pt.out <- b:
	default:
		m.log.Warn("DTE queue full, dropping", "bytes", len(b))
	}
}

func (m *Modem) pollDTR() {
	if m.pt == nil {
		return
	}
	var low bool
	if err := control(m.pt.master, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		low = t.Cflag&unix.CBAUD == unix.B0
		return nil
	}); err != nil {
		return
	}
	if low == m.dtrLow {
		return
	}
	m.dtrLow = low
	m.log.Debug("DTR", "low", low)
	if !low {
		return
	}
	switch m.at.AmpD {
	case 1:
		if m.mode == modeOnline {
			m.mode = modeOnlineCmd
			m.result("OK")
		}
	case 2:
		m.hangup(m.carrier != nil)
	case 3:
		m.hangup(m.carrier != nil)
		m.stopRinging()
		m.at.Factory()
	}
}

// ---- results ----

// result sends a result code per Q/V.
func (m *Modem) result(text string) { m.send(m.at.Result(text)) }

// failure maps a call failure to the X level's result.
func (m *Modem) failure(err error) string {
	f := at.FailNoCarrier
	switch {
	case errors.Is(err, phone.ErrBusy):
		f = at.FailBusy
	case errors.Is(err, phone.ErrNoDialtone):
		f = at.FailNoDialtone
	case errors.Is(err, phone.ErrNoAnswer):
		f = at.FailNoAnswer
	}
	return m.at.FailureText(f)
}

// ---- input ----

func (m *Modem) input(b []byte, now time.Time) {
	if m.silent {
		return
	}
	for len(b) > 0 {
		if m.mode == modeOnline {
			m.online(b, now)
			return
		}
		if m.pending != nil {
			// Any character aborts a dial or answer in progress.
			m.pending.cancel()
			m.pending = nil
			b = b[1:]
			continue
		}
		out, acts, rest := m.at.Feed(b)
		m.send(out)
		for _, a := range acts {
			m.act(a)
		}
		b = rest
	}
}

// online passes data to the far modem and watches for the escape: S12 of
// silence, three S2 characters within S12 of each other, S12 of silence.
func (m *Modem) online(b []byte, now time.Time) {
	select {
	case m.carrierTx <- b:
	default:
		m.log.Warn("carrier queue full, dropping", "bytes", len(b))
	}
	if m.escTimer != nil {
		m.escTimer.Stop()
		m.escTimer = nil
	}
	if m.esc.Data(b, now, m.at) {
		car := m.carrier
		m.escTimer = time.AfterFunc(m.at.Guard(), func() {
			m.post(func() {
				if m.carrier == car && m.mode == modeOnline && m.esc.Armed() {
					m.esc.Reset(time.Now())
					m.mode = modeOnlineCmd
					m.result("OK")
				}
			})
		})
	}
}

// act does what a command line asked for.
func (m *Modem) act(a at.Action) {
	switch a.Kind {
	case at.ActAnswer:
		if res := m.answer(); res != "" {
			m.result(res)
		}
	case at.ActDial:
		if res := m.dial(a.Number); res != "" {
			m.result(res)
		}
	case at.ActOnline:
		if m.carrier == nil {
			m.result("NO CARRIER")
			return
		}
		m.mode = modeOnline
		m.esc.Reset(time.Now())
		m.result(m.connectText())
	case at.ActHangup:
		m.hangup(false)
	default: // at.ActClient: the modem side has nothing to do
	}
}

// connectText is the CONNECT line for the carrier: ARQ only when its data
// path is error-controlled.
func (m *Modem) connectText() string {
	ec := true
	if e, ok := m.carrier.(phone.ErrorControl); ok {
		ec = e.ErrorControlled()
	}
	return m.at.ConnectTextEC(m.speed(), ec)
}

func (m *Modem) speed() int {
	s := m.opts.MaxSpeed
	if m.carrier != nil && m.carrier.Speed() > 0 && m.carrier.Speed() < s {
		s = m.carrier.Speed()
	}
	return s
}

// ---- calls ----

func (m *Modem) incoming(c phone.Call) {
	if m.pt == nil || m.carrier != nil || m.pending != nil || m.ringing != nil {
		c.Reject()
		return
	}
	m.ringing = c
	m.at.Regs[1] = 0
	stop := make(chan struct{})
	m.ringStop = stop
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-c.Gone():
			m.post(func() {
				if m.ringing == c {
					m.stopRinging()
				}
			})
		case <-stop:
		case <-m.done:
		}
	}()
	m.ring(c)
}

// ring sends one RING, counts it in S1 and auto-answers on ring S0.
func (m *Modem) ring(c phone.Call) {
	if m.ringing != c {
		return
	}
	m.at.Regs[1]++
	m.result("RING")
	if m.at.Regs[1] == 1 && m.at.CID && m.at.Verbose && !m.at.Quiet && c.CallerID() != "" {
		// Rockwell/USR format, as mgetty's cnd.c reads it.
		now := time.Now()
		m.send([]byte(fmt.Sprintf("\r\nDATE = %s\r\nTIME = %s\r\nNMBR = %s\r\n", now.Format("0102"), now.Format("1504"), c.CallerID())))
	}
	if m.at.Regs[0] > 0 && m.at.Regs[1] >= m.at.Regs[0] && !m.dtrLow && !m.silent {
		m.answerCall(c)
		return
	}
	m.ringTimer = time.AfterFunc(m.opts.RingInterval, func() { m.post(func() { m.ring(c) }) })
}

func (m *Modem) stopRinging() {
	if m.ringTimer != nil {
		m.ringTimer.Stop()
		m.ringTimer = nil
	}
	if m.ringStop != nil {
		close(m.ringStop)
		m.ringStop = nil
	}
	m.ringing = nil
}

// answer is ATA: answer the ringing call, or go off hook into silence and
// give up after S7 seconds.
func (m *Modem) answer() string {
	if m.carrier != nil {
		return "ERROR"
	}
	if c := m.ringing; c != nil {
		m.answerCall(c)
		return ""
	}
	m.startAttempt(func(ctx context.Context, att *attempt) {
		select {
		case <-ctx.Done():
		case <-m.done:
		}
		m.post(func() {
			if m.pending == att || ctx.Err() == context.Canceled {
				m.pending = nil
				m.result("NO CARRIER")
			}
		})
	})
	return ""
}

// attempt is a dial or answer in progress; any DTE character cancels it.
type attempt struct{ cancel context.CancelFunc }

// startAttempt makes a dial or answer that gives up after S7 seconds the
// pending one and runs it in a goroutine of the modem's.
func (m *Modem) startAttempt(run func(ctx context.Context, att *attempt)) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.at.Regs[7])*time.Second)
	att := &attempt{cancel: cancel}
	m.pending = att
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		run(ctx, att)
	}()
}

func (m *Modem) answerCall(c phone.Call) {
	m.stopRinging()
	m.startAttempt(func(ctx context.Context, att *attempt) {
		car, err := c.Answer(ctx)
		m.post(func() { m.established(att, car, err) })
	})
}

// dial is ATD: dial number (the Engine stripped the modifiers) through
// the phone line.
func (m *Modem) dial(number string) string {
	if m.carrier != nil {
		return "ERROR"
	}
	if m.opts.Phone == nil {
		return m.failure(phone.ErrNoDialtone)
	}
	m.startAttempt(func(ctx context.Context, att *attempt) {
		car, err := m.opts.Phone.Dial(ctx, number)
		m.post(func() { m.established(att, car, err) })
	})
	return ""
}

// established finishes a dial or answer.
func (m *Modem) established(att *attempt, car phone.Carrier, err error) {
	aborted := m.pending != att
	if !aborted {
		m.pending = nil
	}
	att.cancel()
	if err == nil && (aborted || m.pt == nil) {
		car.Close()
		err = context.Canceled
	}
	if err != nil {
		m.log.Debug("call failed", "err", err)
		m.result(m.failure(err))
		return
	}
	m.carrier = car
	m.mode = modeOnline
	m.esc.Reset(time.Now())
	tx := make(chan []byte, 4096)
	m.carrierTx = tx
	m.wg.Add(2)
	go func() { // to the far modem
		defer m.wg.Done()
		for b := range tx {
			if _, err := car.Write(b); err != nil {
				for range tx {
				}
				return
			}
		}
	}()
	go func() { // from the far modem
		defer m.wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := car.Read(buf)
			if n > 0 {
				b := append([]byte(nil), buf[:n]...)
				m.post(func() {
					if m.carrier == car && m.mode == modeOnline {
						m.send(b)
					}
				})
			}
			if err != nil {
				m.post(func() {
					if m.carrier == car {
						m.hangup(true)
					}
				})
				return
			}
		}
	}()
	m.result(m.connectText())
}

// hangup drops the carrier (if any) and returns to command mode. report
// sends NO CARRIER, as for a carrier lost rather than commanded away.
func (m *Modem) hangup(report bool) {
	if m.pending != nil {
		m.pending.cancel()
		m.pending = nil
	}
	if m.escTimer != nil {
		m.escTimer.Stop()
		m.escTimer = nil
	}
	if m.carrier != nil {
		m.carrier.Close()
		close(m.carrierTx)
		m.carrier, m.carrierTx = nil, nil
		if report {
			m.result("NO CARRIER")
		}
	}
	m.mode = modeCommand
	m.at.Reset()
}

var _ phone.Ringer = (*Modem)(nil)
