package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/pppdvm"
	"github.com/isp-box/isp-box/internal/pppdvm/pppdvmtest"
)

// TestTCPLineDialIn: Debian's pppd in the qemu VM, its serial port carried
// over TCP by qemu itself as an emulator's would be, into the box's TCP
// lines: `-serial tcp:HOST:PORT` to a raw line, and `-chardev
// socket,host=,port=,telnet=on` to a Telnet line. The connection starts in
// data mode, AutoPPP takes pppd's first LCP frame, PAP, an address from
// the pool, pppd pings the gateway and the guest fetches a page (all 256
// byte values, 64 KB) over HTTP through the box's userspace NAT.
//
// qemu's telnet=on as a client speaks no Telnet (it negotiates only as a
// server and never doubles IAC), so the Telnet line must notice a raw peer
// (modem/telnet's fallback) for PPP to come up at all.
func TestTCPLineDialIn(t *testing.T) {
	pppdvmtest.NeedVM(t)
	cfg := pap2t(t, func(src string) string {
		return src + `
[line tcp0]
kind tcp
listen 127.0.0.1:0
max-connections 4
idle-timeout 120

[line tcp1]
kind tcp
listen 127.0.0.1:0
telnet yes
max-connections 4
idle-timeout 120
`
	})
	w := startWorld(t, cfg, worldOpts{})
	url, sum, size := vmPage(t)
	for _, tc := range []struct {
		name, line string
		telnet     bool
	}{
		{"serial tcp raw", "tcp0", false},
		{"chardev telnet", "tcp1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := lineAddr(t, w, tc.line)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			vm, err := pppdvm.Start(ctx, pppdvm.Options{
				Mode: pppdvm.ModeDirect, User: "dial", Password: "dial", Auth: pppdvm.AuthPAP,
				SerialTCP: addr, SerialTelnet: tc.telnet, HTTPURL: url,
				Log: pppdvmtest.TestLog(t, "guest: "),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			res, werr := vm.Wait()
			t.Logf("guest: %s (%v after the VM started)", res.Line(), res.Elapsed.Round(10*time.Millisecond))
			if werr != nil {
				t.Fatal(werr)
			}
			if !res.Local.IsValid() || res.Remote != gateway {
				t.Errorf("pppd got local %v remote %v", res.Local, res.Remote)
			}
			if res.PingSent != 3 || res.PingReceived != 3 {
				t.Errorf("pings %d/%d, want 3/3", res.PingReceived, res.PingSent)
			}
			if res.HTTP != "ok" || res.HTTPBytes != size || res.HTTPSHA256 != sum {
				t.Errorf("HTTP fetch %s, %d bytes, sha256 %s; want ok, %d bytes, %s", res.HTTP, res.HTTPBytes, res.HTTPSHA256, size, sum)
			}
			up := waitEvent(t, w, 30*time.Second, func(e bus.PPPUp) bool { return strings.HasPrefix(e.Line, tc.line+":") })
			if up.User != "dial" || up.Remote != res.Local {
				t.Errorf("session up %+v, guest has %v", up, res.Local)
			}
			waitEvent(t, w, 60*time.Second, func(e bus.PPPDown) bool { return e.Line == up.Line })
			if tc.telnet && !strings.Contains(w.logs.String(), "speaks no Telnet") {
				t.Error("no log line for the raw fallback of the Telnet line")
			}
		})
	}
}

// lineAddr is the address the TCP line name listens on.
func lineAddr(t testing.TB, w *world, name string) string {
	t.Helper()
	for _, l := range w.Box.Status().Lines {
		if l.Name == name {
			if addr := strings.TrimPrefix(l.Device, "tcp "); addr != "" && !strings.HasSuffix(addr, ":0") {
				return addr
			}
		}
	}
	t.Fatalf("%s not listening: %+v", name, w.Box.Status().Lines)
	return ""
}

// vmPage serves 64 KB holding every byte value on host loopback, which a
// client reaches at the gateway's address through the userspace NAT; it
// returns the URL for the guest, the page's SHA-256 and its size.
func vmPage(t testing.TB) (url, sum string, size int) {
	t.Helper()
	page := make([]byte, 64<<10)
	for i := range page {
		page[i] = byte(i*7 + i>>8)
	}
	port := webServer(t, string(page))
	h := sha256.Sum256(page)
	return fmt.Sprintf("http://%s:%d/page", gateway, port), hex.EncodeToString(h[:]), len(page)
}
