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
	"strings"
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
	pt         *ptyPair
	mode       mode
	regs       [256]int
	echo       bool
	quiet      bool
	verbose    bool
	xlevel     int
	arq        int // &A
	ampC       int
	ampD       int
	line       []byte // command being typed
	inLine     bool   // after "AT"
	sawA       bool
	lastCmd    string
	silent     bool
	dtrLow     bool
	ringing    phone.Call
	ringTimer  *time.Timer
	ringStop   chan struct{}
	pending    *attempt // dial or answer in progress
	carrier    phone.Carrier
	carrierTx  chan []byte
	lastData   time.Time
	plus       int
	plusAt     time.Time
	escTimer   *time.Timer
	lastNumber string
	cid        bool // #CID=1
}

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
	m := &Modem{opts: opts, log: log.With("comp", "hayes", "modem", opts.Name), ev: make(chan func(), 256), done: make(chan struct{})}
	m.factory()
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
		m.line, m.inLine, m.sawA = nil, false, false
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
			m.factory()
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
	m.do(func() { v = m.regs[n&0xff] })
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
	switch m.ampD {
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
		m.factory()
	}
}

// ---- settings ----

// factory loads the Sportster's factory profile (&F; ATZ loads the same, as
// the emulator has no NVRAM).
func (m *Modem) factory() {
	m.regs = [256]int{}
	m.regs[2], m.regs[3], m.regs[4], m.regs[5] = '+', '\r', '\n', 8
	m.regs[6], m.regs[7], m.regs[8], m.regs[10], m.regs[12] = 2, 60, 2, 7, 50
	m.echo, m.quiet, m.verbose = true, false, true
	m.xlevel, m.arq, m.ampC, m.ampD = 1, 1, 1, 2
	m.cid = false
}

// ---- results ----

// result sends a result code per Q/V: "\r\nTEXT\r\n" or "N\r" (USR 5631).
func (m *Modem) result(text string) {
	if m.quiet {
		return
	}
	if m.verbose {
		m.send([]byte("\r\n" + text + "\r\n"))
		return
	}
	n, ok := at.USRNumeric(text)
	if !ok {
		// Extended &A2/&A3 texts have no code of their own: the &A1 one.
		if i := strings.Index(text, "/ARQ"); i > 0 {
			n, ok = at.USRNumeric(text[:i+4])
		} else if i := strings.IndexByte(text, '/'); i > 0 {
			n, ok = at.USRNumeric(text[:i])
		}
	}
	if !ok {
		n = 1
	}
	m.send([]byte(strconv.Itoa(n) + "\r"))
}

// failure maps a call failure to the X level's result (X0/X1 report only
// NO CARRIER; X2 adds NO DIAL TONE; X3 BUSY; X4 both).
func (m *Modem) failure(err error) string {
	switch {
	case errors.Is(err, phone.ErrBusy) && (m.xlevel == 3 || m.xlevel == 4):
		return "BUSY"
	case errors.Is(err, phone.ErrNoDialtone) && (m.xlevel == 2 || m.xlevel == 4):
		return "NO DIAL TONE"
	case errors.Is(err, phone.ErrNoAnswer):
		return "NO CARRIER"
	}
	return "NO CARRIER"
}

// connectText is the CONNECT message for speed per X and &A (USR Courier
// V.34 manual: &A1 adds /ARQ, &A2 the modulation, &A3 the protocols).
func (m *Modem) connectText(speed int) string {
	if m.xlevel == 0 {
		if m.arq >= 1 {
			return "CONNECT/ARQ"
		}
		return "CONNECT"
	}
	s := "CONNECT " + strconv.Itoa(speed)
	if m.arq >= 1 {
		s += "/ARQ"
	}
	if m.arq >= 2 {
		s += "/" + modulation(speed)
	}
	if m.arq >= 3 {
		s += "/LAPM/V42BIS"
	}
	return s
}

func modulation(speed int) string {
	switch {
	case speed > 14400:
		return "V34"
	case speed > 2400:
		return "V32"
	}
	return "V22"
}

// ---- input ----

func (m *Modem) input(b []byte, now time.Time) {
	if m.silent {
		return
	}
	switch m.mode {
	case modeOnline:
		m.online(b, now)
	default:
		for _, c := range b {
			m.commandByte(c)
		}
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
	guard := time.Duration(m.regs[12]) * 20 * time.Millisecond
	esc := byte(m.regs[2])
	for _, c := range b {
		switch {
		case m.regs[2] > 127:
			m.plus = 0 // escape disabled
		case c == esc && m.plus == 0 && now.Sub(m.lastData) >= guard:
			m.plus, m.plusAt = 1, now
		case c == esc && m.plus > 0 && m.plus < 3 && now.Sub(m.plusAt) < guard:
			m.plus++
			m.plusAt = now
		default:
			m.plus = 0
		}
		m.lastData = now
	}
	if m.escTimer != nil {
		m.escTimer.Stop()
		m.escTimer = nil
	}
	if m.plus == 3 {
		car := m.carrier
		m.escTimer = time.AfterFunc(guard, func() {
			m.post(func() {
				if m.carrier == car && m.mode == modeOnline && m.plus == 3 {
					m.plus = 0
					m.mode = modeOnlineCmd
					m.result("OK")
				}
			})
		})
	}
}

func (m *Modem) commandByte(c byte) {
	if m.pending != nil {
		// Any character aborts a dial or answer in progress.
		m.pending.cancel()
		m.pending = nil
		return
	}
	if m.echo {
		m.send([]byte{c})
	}
	if !m.inLine {
		switch {
		case c == 'A' || c == 'a':
			m.sawA = true
		case m.sawA && (c == 'T' || c == 't'):
			m.inLine, m.sawA, m.line = true, false, nil
		case m.sawA && c == '/':
			m.sawA = false
			if m.echo {
				m.send([]byte{'\r'})
			}
			m.execute(m.lastCmd)
		default:
			m.sawA = false
		}
		return
	}
	switch {
	case int(c) == m.regs[3]:
		m.inLine = false
		cmd := string(m.line)
		m.line = nil
		m.lastCmd = cmd
		m.execute(cmd)
	case int(c) == m.regs[5] || c == 0x7f:
		if len(m.line) > 0 {
			m.line = m.line[:len(m.line)-1]
		}
	case c == '\n':
	default:
		if len(m.line) < 255 {
			m.line = append(m.line, c)
		}
	}
}

// execute runs a command line (the text after AT) and sends its result.
func (m *Modem) execute(line string) {
	cmds, err := at.ParseCommandLine(line)
	if err != nil {
		m.result("ERROR")
		return
	}
	for _, c := range cmds {
		res, final := m.command(c)
		if final {
			if res != "" {
				m.result(res)
			}
			return
		}
		if res == "ERROR" {
			m.result(res)
			return
		}
	}
	m.result("OK")
}

// command executes one command. final means the command produced (or will
// produce, asynchronously) the line's result itself.
func (m *Modem) command(c at.Command) (res string, final bool) {
	switch c.Name {
	case "A":
		return m.answer(), true
	case "D":
		return m.dial(c.Dial), true
	case "E":
		m.echo = c.Num == 1
	case "Q":
		m.quiet = c.Num == 1
	case "V":
		m.verbose = c.Num == 1
	case "X":
		if c.Num > 4 {
			return "ERROR", false
		}
		m.xlevel = c.Num
	case "H":
		if c.Num == 0 {
			m.hangup(false)
		}
	case "O":
		if m.carrier == nil {
			return "NO CARRIER", true
		}
		m.mode = modeOnline
		m.lastData = time.Now()
		return m.connectText(m.speed()), true
	case "Z":
		m.hangup(false)
		m.factory()
	case "I":
		return m.identify(c.Num), true
	case "S":
		switch {
		case c.Query:
			m.send([]byte(fmt.Sprintf("\r\n%03d\r\n", m.regs[c.Reg&0xff])))
		case c.Set:
			if c.Reg > 255 || c.Num > 255 {
				return "ERROR", false
			}
			m.regs[c.Reg] = c.Num
		}
	case "#CID", "+VCID":
		// Caller ID delivery between the first and second RING (USR #CID,
		// Rockwell +VCID).
		if c.Query {
			m.send([]byte(fmt.Sprintf("\r\n%d\r\n", b2i(m.cid))))
		} else {
			m.cid = c.Num == 1
		}
	case "+FCLASS":
		if c.Set && c.HasNum && c.Num != 0 {
			return "ERROR", false // data only
		}
		if c.Query {
			m.send([]byte("\r\n0\r\n"))
		}
	case "&F":
		m.factory()
	case "&C":
		m.ampC = c.Num
	case "&D":
		if c.Num > 3 {
			return "ERROR", false
		}
		m.ampD = c.Num
	case "&A":
		if c.Num > 3 {
			return "ERROR", false
		}
		m.arq = c.Num
	case "B", "C", "L", "M", "N", "P", "T", "Y",
		"&B", "&G", "&H", "&I", "&K", "&M", "&N", "&P", "&R", "&S", "&T", "&U", "&W", "&X", "&Y", "&Z":
		// Accepted and stored nowhere: speaker, flow control, NVRAM...
		// none of it changes what an emulated link does.
	default:
		return "ERROR", false
	}
	return "", false
}

// identify answers ATIn the way a Sportster does (I0 product code, I3
// firmware banner, I4 settings); the exact USR strings are approximated.
func (m *Modem) identify(n int) string {
	var text string
	switch n {
	case 0:
		text = "2886"
	case 1:
		text = "OK" // checksum test passes
	case 3:
		text = "USRobotics Sportster 28800 Fax"
	case 4:
		text = fmt.Sprintf("USRobotics Sportster 28800 Fax Settings...\r\n\r\n   B0  E%d  F1  M1  Q%d  V%d  X%d\r\n   &A%d  &C%d  &D%d  S00=%03d  S07=%03d  S12=%03d",
			b2i(m.echo), b2i(m.quiet), b2i(m.verbose), m.xlevel, m.arq, m.ampC, m.ampD, m.regs[0], m.regs[7], m.regs[12])
	case 7:
		text = "Product type           US/Canada External\r\nProduct ID:            00568601\r\nOptions                V32bis,V.34,V.FC\r\nFax Options            Class 1/Class 2.0"
	default:
		return "ERROR"
	}
	if text != "OK" {
		m.send([]byte("\r\n" + text + "\r\n"))
	}
	return "OK"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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
	m.regs[1] = 0
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
	m.regs[1]++
	m.result("RING")
	if m.regs[1] == 1 && m.cid && m.verbose && !m.quiet && c.CallerID() != "" {
		// Rockwell/USR format, as mgetty's cnd.c reads it.
		now := time.Now()
		m.send([]byte(fmt.Sprintf("\r\nDATE = %s\r\nTIME = %s\r\nNMBR = %s\r\n", now.Format("0102"), now.Format("1504"), c.CallerID())))
	}
	if m.regs[0] > 0 && m.regs[1] >= m.regs[0] && !m.dtrLow && !m.silent {
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.regs[7])*time.Second)
	att := &attempt{cancel: cancel}
	m.pending = att
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
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
	}()
	return ""
}

// attempt is a dial or answer in progress; any DTE character cancels it.
type attempt struct{ cancel context.CancelFunc }

func (m *Modem) answerCall(c phone.Call) {
	m.stopRinging()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.regs[7])*time.Second)
	att := &attempt{cancel: cancel}
	m.pending = att
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		car, err := c.Answer(ctx)
		m.post(func() { m.established(att, car, err) })
	}()
}

// dial is ATD: strip the modifiers and dial through the phone line.
func (m *Modem) dial(s string) string {
	if m.carrier != nil {
		return "ERROR"
	}
	var num strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r >= '0' && r <= '9', r == '*', r == '#':
			num.WriteRune(r)
		case r == 'L':
			num.Reset()
			num.WriteString(m.lastDial())
		}
	}
	m.lastNumber = num.String()
	if m.opts.Phone == nil {
		return m.failure(phone.ErrNoDialtone)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.regs[7])*time.Second)
	att := &attempt{cancel: cancel}
	m.pending = att
	number := num.String()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		car, err := m.opts.Phone.Dial(ctx, number)
		m.post(func() { m.established(att, car, err) })
	}()
	return ""
}

func (m *Modem) lastDial() string { return m.lastNumber }

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
	m.lastData = time.Now()
	m.plus = 0
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
	m.result(m.connectText(m.speed()))
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
	m.inLine, m.sawA, m.line = false, false, nil
}

var _ phone.Ringer = (*Modem)(nil)
