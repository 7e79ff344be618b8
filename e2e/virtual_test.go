package e2e

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/pppdvm"
	"github.com/isp-box/isp-box/internal/pppdvm/pppdvmtest"
	"github.com/isp-box/isp-box/internal/sim/hayes/hayestest"
)

// TestVirtualModemDialIn: no modem at all. Debian's pppd and chat in the
// qemu VM are the old computer; its serial port reaches the box's virtual
// modem line as if through a null-modem cable (the VM's serial line is
// bridged to the master side of a pty whose slave the line opens as its
// serial port). chat sends ATZ and ATDT5551234; the box answers the AT
// dialogue itself, runs the number through the seed's dial plan (_X! →
// Dial(SIP/pap2t-ispmodem), a peer with a modem line of this box: the ISP
// answers), says CONNECT 33600, and PPP comes up with PAP on the line's own
// address; pppd pings the gateway and the guest fetches a page over HTTP
// through the box's userspace NAT. When
// pppd hangs up, its disconnect script sends +++ and ATH0; the line is back
// in command mode, idle, and answers AT.
func TestVirtualModemDialIn(t *testing.T) {
	pppdvmtest.NeedVM(t)
	dte, slave := hayestest.OpenPTY(t)
	cfg := pap2t(t, func(src string) string {
		return src + `
[line ttyS0]
kind virtual-modem
device ` + slave + `
connect-speed 33600

[ppp ttyS0]
nocrtscts
nolock
192.168.32.1:192.168.32.106
netmask 255.255.255.0
`
	})
	w := startWorld(t, cfg, worldOpts{})
	// The bus stamps each event: connect → IP up as the box saw it.
	times := make(chan time.Time, 2)
	sub := w.Bus.SubscribeReliable("virtual-timing", func(ev bus.Event) bool {
		switch e := ev.(type) {
		case bus.ModemConnected:
			return e.Line == "ttyS0"
		case bus.PPPUp:
			return e.Line == "ttyS0"
		}
		return false
	})
	defer sub.Close()
	go func() {
		for env := range sub.C() {
			select {
			case times <- env.Time:
			default:
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	url, sum, size := vmPage(t)
	vm, err := pppdvm.Start(ctx, pppdvm.Options{
		Mode: pppdvm.ModeChat, User: "dial", Password: "dial", Auth: pppdvm.AuthPAP,
		HTTPURL:    url,
		ChatScript: "ABORT BUSY ABORT 'NO CARRIER' '' ATZ OK AT&FE0V1&C1&D2S0=0 OK ATM0L0X3 OK ATDT5551234 CONNECT ''\n",
		// Hang up the Hayes way when the link is down: +++ with its guard
		// times, then ATH0. (No OK is expected after +++: the line may
		// already be in command mode after the session ended.)
		Extra: []string{`disconnect "chat -v -t 10 '' '\\d\\d+++\\d\\d\\c' '' ATH0 OK"`},
		Log:   pppdvmtest.TestLog(t, "guest: "),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	bctx, bcancel := context.WithCancel(ctx)
	bridged := make(chan error, 1)
	go func() { bridged <- vm.Bridge(bctx, dte.File()) }()

	res, werr := vm.Wait()
	t.Logf("guest: %s (%v after the VM started)", res.Line(), res.Elapsed.Round(10*time.Millisecond))
	if werr != nil {
		bcancel()
		t.Fatal(werr)
	}
	want := netip.MustParseAddr("192.168.32.106")
	if res.Local != want || res.Remote != gateway {
		t.Errorf("pppd got local %v remote %v, want %v %v", res.Local, res.Remote, want, gateway)
	}
	if res.PingSent != 3 || res.PingReceived != 3 {
		t.Errorf("pings %d/%d, want 3/3", res.PingReceived, res.PingSent)
	}
	if res.HTTP != "ok" || res.HTTPBytes != size || res.HTTPSHA256 != sum {
		t.Errorf("HTTP fetch %s, %d bytes, sha256 %s; want ok, %d bytes, %s", res.HTTP, res.HTTPBytes, res.HTTPSHA256, size, sum)
	}
	conn := waitEvent(t, w, 30*time.Second, func(e bus.ModemConnected) bool { return e.Line == "ttyS0" })
	if conn.Result != "CONNECT 33600/ARQ" || conn.Speed != 33600 {
		t.Errorf("connected %+v", conn)
	}
	up := waitEvent(t, w, 30*time.Second, func(e bus.PPPUp) bool { return e.Line == "ttyS0" })
	if up.User != "dial" || up.Remote != want {
		t.Errorf("session up: %+v", up)
	}
	connAt, upAt := <-times, <-times
	t.Logf("CONNECT -> IPCP up on the box: %v", upAt.Sub(connAt).Round(time.Millisecond))
	waitEvent(t, w, 60*time.Second, func(e bus.PPPDown) bool { return e.Line == "ttyS0" })
	// The session's end put the line back in command mode (idle): after
	// PPP went down there is an idle state on ttyS0...
	idleAfterDown := false
	w.mu.Lock()
	down := -1
	for i, ev := range w.events {
		switch e := ev.(type) {
		case bus.PPPDown:
			if e.Line == "ttyS0" {
				down = i
			}
		case bus.LineState:
			if e.Line == "ttyS0" && e.State == "idle" && down >= 0 && i > down {
				idleAfterDown = true
			}
		}
	}
	w.mu.Unlock()
	if !idleAfterDown {
		t.Error("no idle state on ttyS0 after the session ended")
	}
	// ...and pppd's disconnect script (+++, then ATH0 expecting OK) got
	// its OK from the line in command mode.
	if !strings.Contains(res.Console, "ATH0 OK finished") || !strings.Contains(res.Console, "ATH0 OK finished (pid") {
		t.Logf("console tail:\n%s", res.Console)
	}
	if strings.Contains(res.Console, "disconnect script failed") {
		t.Error("pppd's disconnect chat (+++ ATH0 OK) failed")
	}
	bcancel()
	if err := <-bridged; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("bridge: %v", err)
	}
}
