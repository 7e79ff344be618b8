package modem

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isp-box/isp-box/internal/clock"
	"github.com/isp-box/isp-box/internal/sim/hayes"
)

// hwPort opens a pty through openPort and then pretends it has modem lines
// whose state the test sets: how the RTS/CTS and DCD logic of a real UART is
// exercised without one. Termios (CRTSCTS) is real.
func hwPort(t *testing.T, bits *atomic.Int64) *port {
	t.Helper()
	m, err := hayes.New(hayes.Options{Link: filepath.Join(t.TempDir(), "ttyUSB9")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	cfg := DefaultLineConfig("ttyUSB9")
	cfg.Device, cfg.FlowControl = m.Path(), "none"
	p, err := openPort(context.Background(), cfg, time.Second, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.close(); p.wait() })
	if p.caps.modemLines {
		t.Fatal("a pty claims modem lines")
	}
	p.caps.modemLines = true
	p.modemBits = func() (int, error) { return int(bits.Load()), nil }
	return p
}

func TestCTSNeverRises(t *testing.T) {
	var bits atomic.Int64 // CTS low: modem off or a three-wire cable
	p := hwPort(t, &bits)
	start := time.Now()
	err := p.enableCRTSCTS(context.Background(), 300*time.Millisecond)
	if !errors.Is(err, errNoCTS) {
		t.Fatalf("err %v, want errNoCTS", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("gave up after %v", d)
	}
	t.Logf("refused: %v", err)
	tio, _ := unix.IoctlGetTermios(p.ctl, unix.TCGETS)
	if tio.Cflag&unix.CRTSCTS != 0 {
		t.Error("CRTSCTS set although CTS is low")
	}
	bits.Store(unix.TIOCM_CTS | unix.TIOCM_DSR)
	if err := p.enableCRTSCTS(context.Background(), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	tio, _ = unix.IoctlGetTermios(p.ctl, unix.TCGETS)
	if tio.Cflag&unix.CRTSCTS == 0 {
		t.Error("CRTSCTS not set on the tty")
	}
	// serial.SetMode (speed changes) must not clear it again.
	if err := p.setSpeed(19200); err != nil {
		t.Fatal(err)
	}
	tio, _ = unix.IoctlGetTermios(p.ctl, unix.TCGETS)
	if tio.Cflag&unix.CRTSCTS == 0 {
		t.Error("SetMode cleared CRTSCTS")
	}
}

// TestDCDDrop: on a port with DCD the session ends when the pin drops,
// within the poll interval.
func TestDCDDrop(t *testing.T) {
	var bits atomic.Int64
	bits.Store(unix.TIOCM_CTS | unix.TIOCM_CD)
	p := hwPort(t, &bits)
	l, _ := NewLine(DefaultLineConfig("ttyUSB9"), LineOptions{})
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	c := &conn{p: p, ctx: ctx, cancel: cancel, in: make(chan []byte, 1)}
	done := make(chan struct{})
	go func() { defer close(done); l.watchDCD(ctx, c) }()
	time.Sleep(3 * l.t.dcdPoll)
	if ctx.Err() != nil {
		t.Fatal("session ended with DCD up")
	}
	start := time.Now()
	bits.Store(unix.TIOCM_CTS)
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, ErrCarrierLost) {
		t.Fatalf("Read: %v, want ErrCarrierLost", err)
	}
	d := time.Since(start)
	t.Logf("DCD low -> Read error after %v", d)
	if d > time.Second {
		t.Errorf("took %v", d)
	}
	<-done
}
