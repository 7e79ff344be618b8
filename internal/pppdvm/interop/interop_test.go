package interop

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/pppdvm"
	"github.com/isp-box/isp-box/internal/pppdvm/pppdvmtest"
	"github.com/isp-box/isp-box/ppp"
)

// The seed setup's addresses (examples/pap2t.conf, from the seed's /etc/ppp/options.ttyS0
// `192.168.32.1:192.168.32.105`, `ms-dns 8.8.8.8`, pap-secrets `dial * "dial" *`).
var (
	gateway = netip.MustParseAddr("192.168.32.1")
	client  = netip.MustParseAddr("192.168.32.105")
	dns     = netip.MustParseAddr("8.8.8.8")
)

// TestRealPPPD dials the project's PPP server from Debian's pppd 2.4.9 over
// the VM's serial line (a direct line: no modem), once per authentication
// protocol the server requires, and checks what pppd itself reports: the
// seed's addresses, ms-dns in both DNS slots, and 3 of 3 pings to the
// gateway answered through the server's Network. A wrong password must
// fail on both sides.
func TestRealPPPD(t *testing.T) {
	pppdvmtest.NeedVM(t)
	tests := []struct {
		name     string
		server   ppp.AuthProto // what the server requires
		client   string        // what pppd accepts (it refuses the others)
		password string
		wantFail bool
	}{
		{name: "pap", server: ppp.AuthPAP, client: pppdvm.AuthPAP, password: "dial"},
		{name: "chap-md5", server: ppp.AuthCHAP, client: pppdvm.AuthCHAP, password: "dial"},
		{name: "mschapv2", server: ppp.AuthMSCHAPv2, client: pppdvm.AuthMSCHAPv2, password: "dial"},
		{name: "mschapv1", server: ppp.AuthMSCHAP, client: pppdvm.AuthMSCHAP, password: "dial"},
		{name: "pap wrong password", server: ppp.AuthPAP, client: pppdvm.AuthPAP, password: "wrong", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()

			vm, err := pppdvm.Start(ctx, pppdvm.Options{
				Mode: pppdvm.ModeDirect, User: "dial", Password: tt.password, Auth: tt.client,
				Log: pppdvmtest.TestLog(t, "guest: "),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()

			cfg := ppp.DefaultConfig()
			cfg.Local, cfg.Remote = gateway, client
			cfg.DNS = []netip.Addr{dns}
			cfg.RequireAuth = true
			cfg.Auth = []ppp.AuthProto{tt.server}
			cfg.Debug = true
			nw := &pppdvmtest.EchoNet{Gateway: gateway, Client: client}
			type served struct {
				rec ppp.Record
				err error
			}
			// Answer once pppd speaks, as the line manager starts PPP on
			// CONNECT: a loaded machine may take over 30 s to boot the guest.
			if err := vm.WaitSerial(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("pppd spoke %v after Start", time.Since(vm.Started()).Round(10*time.Millisecond))
			servedc := make(chan served, 1)
			go func() {
				rec, err := ppp.Serve(ctx, vm.Serial(), cfg, ppp.Options{
					Log:     slog.New(slog.NewTextHandler(pppdvmtest.TestLog(t, "server: "), &slog.HandlerOptions{Level: slog.LevelDebug})),
					Line:    "vm-ttyS1",
					Users:   []ppp.User{{Name: "dial", Server: "*", Secret: "dial", Addrs: []string{"*"}}},
					Network: nw,
				})
				servedc <- served{rec, err}
			}()

			res, werr := vm.Wait()
			t.Logf("guest: %s (%v after Start)", res.Line(), res.Elapsed.Round(10*time.Millisecond))
			var s served
			select {
			case s = <-servedc:
			case <-time.After(30 * time.Second):
				t.Fatal("ppp.Serve did not return within 30 s of the guest's power-off")
			}
			t.Logf("server: %+v err=%v", s.rec, s.err)

			if tt.wantFail {
				// pppd itself must see the refusal: it logs "PAP authentication
				// failed" and exits 19 (pppd(8): "We failed to authenticate
				// ourselves to the peer"). 16 would mean its Terminate-Request
				// went unanswered and it ended on "Modem hangup".
				if werr == nil || res.OK || !strings.Contains(res.Console, "PAP authentication failed") || res.PPPDExit != 19 {
					t.Errorf("guest: err=%v result %q: want a failed call, pppd's \"PAP authentication failed\", pppd_exit=19", werr, res.Line())
				}
				if s.rec.Cause != ppp.CauseAuth || s.rec.Up != (time.Time{}) {
					t.Errorf("server record cause %q up %v, want %q and never up", s.rec.Cause, s.rec.Up, ppp.CauseAuth)
				}
				return
			}
			if werr != nil {
				t.Fatal(werr)
			}
			if res.Local != client || res.Remote != gateway {
				t.Errorf("pppd got local %v remote %v, want %v and %v", res.Local, res.Remote, client, gateway)
			}
			if res.DNS1 != dns || res.DNS2 != dns {
				t.Errorf("pppd got DNS %v %v, want %v in both (one ms-dns fills both, as pppd)", res.DNS1, res.DNS2, dns)
			}
			if res.PingSent != 3 || res.PingReceived != 3 {
				t.Errorf("pings %d/%d, want 3/3", res.PingReceived, res.PingSent)
			}
			if n := nw.Echoes(); n != 3 {
				t.Errorf("the network answered %d echo requests, want 3", n)
			}
			// The guest SIGTERMs pppd after the pings: it sends an LCP
			// Terminate-Request, so the server ends on the peer's request.
			if s.rec.Cause != ppp.CausePeer {
				t.Errorf("server record cause %q, want %q", s.rec.Cause, ppp.CausePeer)
			}
			if s.rec.User != "dial" || s.rec.Auth != tt.server || s.rec.Remote != client {
				t.Errorf("server record user %q auth %q remote %v, want dial %q %v", s.rec.User, s.rec.Auth, s.rec.Remote, tt.server, client)
			}
			if s.rec.Up.IsZero() || s.rec.PktsIn < 3 || s.rec.PktsOut < 3 {
				t.Errorf("server record up %v packets in %d out %d: want up and at least the 3 echoes each way", s.rec.Up, s.rec.PktsIn, s.rec.PktsOut)
			}
		})
	}
}
