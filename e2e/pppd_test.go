package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/pppdvm"
	"github.com/isp-box/isp-box/internal/pppdvm/pppdvmtest"
)

// TestRealPPPDDialIn is the whole chain with a real dial-in client: Debian's
// pppd and chat in a qemu VM whose serial port is bridged to the virtual
// ATA's client-line modem. chat dials ATDT88567682 through the box's PBX,
// the box's modem line answers after two rings, pppd authenticates with
// PAP as dial/dial (the test requires PAP on the line instead of the
// seed's noauth), gets the seed's address and DNS, and pings the gateway,
// the box's userspace network, three times.
func TestRealPPPDDialIn(t *testing.T) {
	pppdvmtest.NeedVM(t)
	cfg := pap2t(t, func(src string) string {
		// [ppp ttyUSB0] is read after [ppp]: its noauth would beat
		// [ppp]'s auth +pap, so turn it into auth.
		i := strings.Index(src, "[ppp ttyUSB0]")
		j := strings.Index(src[i:], "\nnoauth\n")
		if i < 0 || j < 0 {
			t.Fatal("examples/pap2t.conf has no noauth in [ppp ttyUSB0] any more")
		}
		return src[:i+j] + "\nauth\n" + src[i+j+len("\nnoauth\n"):]
	})
	if lp := cfg.Lines[0].PPP; !lp.RequireAuth {
		t.Fatalf("line ttyUSB0 PPP config does not require authentication: %+v", lp)
	}
	w := startWorld(t, cfg, worldOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	vm, err := pppdvm.Start(ctx, pppdvm.Options{
		Mode: pppdvm.ModeChat, User: "dial", Password: "dial", Auth: pppdvm.AuthPAP,
		Log: pppdvmtest.TestLog(t, "guest: "),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	bctx, bcancel := context.WithCancel(ctx)
	bridged := make(chan error, 1)
	go func() { bridged <- vm.BridgeToPTY(bctx, w.Clients["pap2t-client"].Path()) }()

	res, werr := vm.Wait()
	bcancel()
	if err := <-bridged; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("bridge: %v", err)
	}
	t.Logf("guest: %s (%v after the VM started, guest uptime %v)", res.Line(), res.Elapsed.Round(10*time.Millisecond), res.GuestTime)
	if werr != nil {
		t.Fatal(werr)
	}
	if res.Local != client || res.Remote != gateway || res.DNS1 != seedDNS || res.DNS2 != seedDNS {
		t.Errorf("pppd got local %v remote %v dns %v %v, want %v %v %v %v", res.Local, res.Remote, res.DNS1, res.DNS2, client, gateway, seedDNS, seedDNS)
	}
	if res.PingSent != 3 || res.PingReceived != 3 {
		t.Errorf("pings %d/%d, want 3/3", res.PingReceived, res.PingSent)
	}
	up := waitEvent(t, w, 30*time.Second, func(e bus.PPPUp) bool { return true })
	if up.User != "dial" || up.Remote != client {
		t.Errorf("box session up: user %q remote %v, want dial (authenticated with PAP) and %v", up.User, up.Remote, client)
	}
	down := waitEvent(t, w, 60*time.Second, func(e bus.PPPDown) bool { return true })
	t.Logf("box: %v", down)
	if down.User != "dial" || down.BytesIn == 0 || down.BytesOut == 0 {
		t.Errorf("box session record %+v: want user dial and bytes both ways", down)
	}
	if rings := len(eventsOf[bus.LineRing](w, nil)); rings != 2 {
		t.Errorf("%d RINGs, want 2 (rings 2)", rings)
	}
	ended := waitEvent(t, w, 60*time.Second, func(e bus.CallEnded) bool { return true })
	if ended.Status != "ANSWER" || ended.From != "pap2t-client" || ended.Callee != "pap2t-ispmodem" || ended.To != "88567682" {
		t.Errorf("call record %+v: want pap2t-client -> 88567682 answered by pap2t-ispmodem", ended)
	}
}
