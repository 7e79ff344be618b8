package e2e

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/pppdvm"
	"github.com/isp-box/isp-box/internal/pppdvm/pppdvmtest"
)

// TestTCPLineDialIn: Debian's pppd in the qemu VM, its serial port carried
// over TCP to the box's TCP line (raw): the connection starts in data mode,
// AutoPPP takes pppd's first LCP frame, PAP, an address from the pool, and
// pppd pings the gateway through the box's userspace network.
func TestTCPLineDialIn(t *testing.T) {
	pppdvmtest.NeedVM(t)
	cfg := pap2t(t, func(src string) string {
		return src + `
[line tcp0]
kind tcp
listen 127.0.0.1:0
max-connections 4
idle-timeout 120
`
	})
	w := startWorld(t, cfg, worldOpts{})
	var addr string
	for _, l := range w.Box.Status().Lines {
		if l.Name == "tcp0" {
			addr = strings.TrimPrefix(l.Device, "tcp ")
		}
	}
	if addr == "" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("tcp0 not listening: %+v", w.Box.Status().Lines)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, err := pppdvm.Start(ctx, pppdvm.Options{
		Mode: pppdvm.ModeDirect, User: "dial", Password: "dial", Auth: pppdvm.AuthPAP,
		Log: pppdvmtest.TestLog(t, "guest: "),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(ctx)
	bridged := make(chan error, 1)
	go func() { bridged <- vm.Bridge(bctx, nc) }()
	res, werr := vm.Wait()
	t.Logf("guest: %s (%v after the VM started)", res.Line(), res.Elapsed.Round(10*time.Millisecond))
	if werr != nil {
		bcancel()
		t.Fatal(werr)
	}
	if !res.Local.IsValid() || res.Remote != gateway {
		t.Errorf("pppd got local %v remote %v", res.Local, res.Remote)
	}
	if res.PingSent != 3 || res.PingReceived != 3 {
		t.Errorf("pings %d/%d, want 3/3", res.PingReceived, res.PingSent)
	}
	up := waitEvent(t, w, 30*time.Second, func(e bus.PPPUp) bool { return strings.HasPrefix(e.Line, "tcp0:") })
	if up.User != "dial" || up.Remote != res.Local {
		t.Errorf("session up %+v, guest has %v", up, res.Local)
	}
	waitEvent(t, w, 60*time.Second, func(e bus.PPPDown) bool { return strings.HasPrefix(e.Line, "tcp0:") })
	bcancel()
	if err := <-bridged; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("bridge: %v", err)
	}
}
