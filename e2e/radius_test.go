package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/pppdvm"
	"github.com/isp-box/isp-box/internal/pppdvm/pppdvmtest"
	"github.com/isp-box/isp-box/internal/radius/radiustest"
	"github.com/isp-box/isp-box/internal/testutil"
)

// TestRadiusPppdTCPLine (issue 14): Debian's pppd in the qemu VM dials
// the box's TCP line and authenticates with MS-CHAPv2; the box asks a real
// FreeRADIUS, gives pppd the Framed-IP-Address it returned, and accounts
// the session with NAS-Port-Type Virtual (a TCP line, RFC 2865 §5.41).
func TestRadiusPppdTCPLine(t *testing.T) {
	pppdvmtest.NeedVM(t)
	srv := radiustest.Start(t, radiustest.Options{Users: `vmuser Cleartext-Password := "vmpass"
	Framed-IP-Address = 192.168.32.88
`})
	cfg := pap2t(t, func(src string) string {
		src = strings.Replace(src, "\n+pap ", "\n;+pap ", 1)
		return src + fmt.Sprintf(`
[radius]
authserver = %s %s
acctserver = %s %s
timeout = 2
nas-identifier = vm-box
auth-order = file radius

[line tcp0]
kind tcp
listen 127.0.0.1:0
max-connections 4
idle-timeout 120

[ppp tcp0]
auth
require-mschap-v2
`, srv.AuthAddr(), srv.Secret(), srv.AcctAddr(), srv.Secret())
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
		Mode: pppdvm.ModeDirect, User: "vmuser", Password: "vmpass", Auth: pppdvm.AuthMSCHAPv2,
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
	t.Logf("guest: %s", res.Line())
	if werr != nil {
		bcancel()
		t.Fatal(werr)
	}
	if res.Local != netip.MustParseAddr("192.168.32.88") {
		t.Errorf("pppd got %v, want RADIUS's Framed-IP-Address 192.168.32.88", res.Local)
	}
	up := waitEvent(t, w, 30*time.Second, func(e bus.PPPUp) bool { return strings.HasPrefix(e.Line, "tcp0:") })
	waitEvent(t, w, 60*time.Second, func(e bus.PPPDown) bool { return e.Session == up.Session })
	bcancel()
	if err := <-bridged; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("bridge: %v", err)
	}
	var recs []radiustest.Record
	testutil.WaitFor(t, 20*time.Second, "Start and Stop at FreeRADIUS", func() (bool, string) {
		recs = nil
		for _, r := range srv.Accounting() {
			if r["Acct-Session-Id"] == up.Session {
				recs = append(recs, r)
			}
		}
		return len(recs) == 2 && recs[1]["Acct-Status-Type"] == "Stop", fmt.Sprint(recs)
	})
	for _, r := range recs {
		if r["NAS-Port-Type"] != "Virtual" || !strings.HasPrefix(r["NAS-Port-Id"], "tcp0") || r["User-Name"] != "vmuser" || r["NAS-Identifier"] != "vm-box" {
			t.Errorf("record %v", r)
		}
	}
}
