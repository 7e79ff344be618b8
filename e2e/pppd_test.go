// The tests with Debian's real pppd (and chat) in the qemu VM of
// e2e/pppdvm, all in this file: pppd against the PPP server alone
// (TestRealPPPD), through the modem line manager on emulated modems
// (TestChatDialIn), through the whole box (TestRealPPPDDialIn, the virtual
// modem line, the TCP line, RADIUS). They skip without the VM (make
// pppd-vm) and fail instead when ISPBOX_REQUIRE_PPPD_VM is set.

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/e2e/pppdvm"
	"github.com/isp-box/isp-box/e2e/pppdvm/pppdvmtest"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/radius/radiustest"
	"github.com/isp-box/isp-box/internal/sim/hayes"
	"github.com/isp-box/isp-box/internal/sim/hayes/hayestest"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/ppp"
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

	res, stop := dialFromVM(t, ctx, pppdvm.Options{Mode: pppdvm.ModeChat, User: "dial", Password: "dial", Auth: pppdvm.AuthPAP},
		toPTY(w.Clients["pap2t-client"].Path()))
	stop() // the modem hangs up when its pty closes, as before the checks
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
			cfg.DNS = []netip.Addr{seedDNS}
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
			if res.DNS1 != seedDNS || res.DNS2 != seedDNS {
				t.Errorf("pppd got DNS %v %v, want %v in both (one ms-dns fills both, as pppd)", res.DNS1, res.DNS2, seedDNS)
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

// TestChatDialIn: chat in the VM dials ATDT88567682 on an emulated modem
// (the guest's serial line bridged to its pty), the exchange rings the ISP's
// emulated modem, the project's modem.Line answers it (mgetty's job) and
// hands the call to ppp.Serve (pppd's job), and Debian's pppd gets the
// seed's address and DNS and pings the gateway.
func TestChatDialIn(t *testing.T) {
	pppdvmtest.NeedVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(pppdvmtest.TestLog(t, "box: "), &slog.HandlerOptions{Level: slog.LevelDebug}))

	x := hayes.NewExchange()
	ispModem, err := hayes.New(hayes.Options{Name: "ispmodem", Log: log.With("comp", "hayes-isp")})
	if err != nil {
		t.Fatal(err)
	}
	defer ispModem.Close()
	x.Attach("88567682", ispModem)
	clientModem, err := hayes.New(hayes.Options{Name: "client", Phone: x.Line("5551234"), Log: log.With("comp", "hayes-client")})
	if err != nil {
		t.Fatal(err)
	}
	defer clientModem.Close()

	// The ISP side: the seed's mgetty line and pppd options.
	lcfg := modem.DefaultLineConfig("ispmodem")
	lcfg.Device = ispModem.Path()
	lcfg.Lock = false         // no UUCP lock dir needed for a pty
	lcfg.FlowControl = "none" // a pty has no CTS
	pcfg := ppp.DefaultConfig()
	pcfg.Local, pcfg.Remote = gateway, client
	pcfg.DNS = []netip.Addr{seedDNS}
	pcfg.RequireAuth = true
	pcfg.Auth = []ppp.AuthProto{ppp.AuthPAP}
	nw := &pppdvmtest.EchoNet{Gateway: gateway, Client: client}
	records := make(chan ppp.Record, 4)
	line, err := modem.NewLine(lcfg, modem.LineOptions{
		Log:       log, // modem adds comp=modem
		DetectPPP: ppp.Detect,
		Handler: func(ctx context.Context, c modem.Conn, user string) error {
			rec, err := ppp.Serve(ctx, c, pcfg, ppp.Options{
				Log:          log, // ppp adds comp=ppp
				Line:         c.Line(),
				Users:        []ppp.User{{Name: "dial", Server: "*", Secret: "dial", Addrs: []string{"*"}}},
				Network:      nw,
				LoggedInUser: user,
			})
			records <- rec
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	lineDone := make(chan error, 1)
	go func() { lineDone <- line.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-lineDone:
		case <-time.After(30 * time.Second):
			t.Error("modem.Line.Run did not return within 30 s of cancel")
		}
	}()

	res, stop := dialFromVM(t, ctx, pppdvm.Options{Mode: pppdvm.ModeChat, User: "dial", Password: "dial", Auth: pppdvm.AuthPAP},
		toPTY(clientModem.Path()))
	stop() // the modem hangs up when its pty closes, as before the checks
	if res.Local != client || res.Remote != gateway || res.DNS1 != seedDNS || res.DNS2 != seedDNS {
		t.Errorf("pppd got local %v remote %v dns %v %v, want %v %v %v %v", res.Local, res.Remote, res.DNS1, res.DNS2, client, gateway, seedDNS, seedDNS)
	}
	if res.PingSent != 3 || res.PingReceived != 3 || nw.Echoes() != 3 {
		t.Errorf("pings %d/%d, network answered %d: want 3/3 and 3", res.PingReceived, res.PingSent, nw.Echoes())
	}
	select {
	case rec := <-records:
		t.Logf("server: %+v", rec)
		if rec.User != "dial" || rec.Auth != ppp.AuthPAP || rec.Cause != ppp.CausePeer || rec.Up.IsZero() {
			t.Errorf("server record user %q auth %q cause %q up %v: want dial, pap, %q, up", rec.User, rec.Auth, rec.Cause, rec.Up, ppp.CausePeer)
		}
	case <-time.After(30 * time.Second):
		t.Error("no session record within 30 s of the guest's power-off")
	}
	if st := line.Status(); st.Answered != 1 {
		t.Errorf("line answered %d calls, want 1 (status %+v)", st.Answered, st)
	}
}

// TestVirtualModemDialIn: no modem at all. Debian's pppd and chat in the
// qemu VM are the old computer; its serial port reaches the box's virtual
// modem line as if through a null-modem cable (the VM's serial line is
// bridged to the master side of a pty whose slave the line opens as its
// serial port). chat sends ATZ and ATDT5551234; the box answers the AT
// dialogue itself, runs the number through the seed's dial plan (_X! →
// Dial(SIP/pap2t-ispmodem), a peer with a modem line of this box: the ISP
// answers), says CONNECT 33600, and PPP comes up with PAP on the line's own
// address; pppd pings the gateway and the guest fetches a page over HTTP
// through the box's userspace NAT. When pppd hangs up, its disconnect script sends +++ and ATH0; the line is back
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
	res, stop := dialFromVM(t, ctx, pppdvm.Options{
		Mode: pppdvm.ModeChat, User: "dial", Password: "dial", Auth: pppdvm.AuthPAP,
		HTTPURL:    url,
		ChatScript: "ABORT BUSY ABORT 'NO CARRIER' '' ATZ OK AT&FE0V1&C1&D2S0=0 OK ATM0L0X3 OK ATDT5551234 CONNECT ''\n",
		// Hang up the Hayes way when the link is down: +++ with its guard
		// times, then ATH0. (No OK is expected after +++: the line may
		// already be in command mode after the session ended.)
		Extra: []string{`disconnect "chat -v -t 10 '' '\\d\\d+++\\d\\d\\c' '' ATH0 OK"`},
	}, func(ctx context.Context, vm *pppdvm.VM) error { return vm.Bridge(ctx, dte.File()) })
	want := netip.MustParseAddr("192.168.32.106")
	if res.Local != want || res.Remote != gateway {
		t.Errorf("pppd got local %v remote %v, want %v %v", res.Local, res.Remote, want, gateway)
	}
	if res.PingSent != 3 || res.PingReceived != 3 {
		t.Errorf("pings %d/%d, want 3/3", res.PingReceived, res.PingSent)
	}
	checkPage(t, res, sum, size)
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
	stop()
}

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
		return src + tcpLine + `
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
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			res, _ := dialFromVM(t, ctx, pppdvm.Options{
				Mode: pppdvm.ModeDirect, User: "dial", Password: "dial", Auth: pppdvm.AuthPAP,
				SerialTCP: lineAddr(t, w, tc.line), SerialTelnet: tc.telnet, HTTPURL: url,
			}, nil)
			if !res.Local.IsValid() || res.Remote != gateway {
				t.Errorf("pppd got local %v remote %v", res.Local, res.Remote)
			}
			if res.PingSent != 3 || res.PingReceived != 3 {
				t.Errorf("pings %d/%d, want 3/3", res.PingReceived, res.PingSent)
			}
			checkPage(t, res, sum, size)
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
`+tcpLine+`
[ppp tcp0]
auth
require-mschap-v2
`, srv.AuthAddr(), srv.Secret(), srv.AcctAddr(), srv.Secret())
	})
	w := startWorld(t, cfg, worldOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, stop := dialFromVM(t, ctx, pppdvm.Options{Mode: pppdvm.ModeDirect, User: "vmuser", Password: "vmpass", Auth: pppdvm.AuthMSCHAPv2},
		toTCPLine(t, w))
	if res.Local != netip.MustParseAddr("192.168.32.88") {
		t.Errorf("pppd got %v, want RADIUS's Framed-IP-Address 192.168.32.88", res.Local)
	}
	up := waitEvent(t, w, 30*time.Second, func(e bus.PPPUp) bool { return strings.HasPrefix(e.Line, "tcp0:") })
	waitEvent(t, w, 60*time.Second, func(e bus.PPPDown) bool { return e.Session == up.Session })
	stop()
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

// dialFromVM boots Debian's pppd in the VM with opts, joins its serial
// line to the box side with bridge (a pty's master, a TCP connection) and
// waits for the guest to power off: a guest that reports no successful
// call fails the test. A nil bridge leaves the serial line to qemu
// (Options.SerialTCP). stop ends the bridge (the test's end does too);
// tests that watch the session end on the box call it after that.
func dialFromVM(t *testing.T, ctx context.Context, opts pppdvm.Options, bridge func(context.Context, *pppdvm.VM) error) (res pppdvm.Result, stop func()) {
	t.Helper()
	if opts.Log == nil {
		opts.Log = pppdvmtest.TestLog(t, "guest: ")
	}
	vm, err := pppdvm.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	bctx, bcancel := context.WithCancel(ctx)
	bridged := make(chan error, 1)
	if bridge == nil {
		bridged <- nil
	} else {
		go func() { bridged <- bridge(bctx, vm) }()
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			bcancel()
			if err := <-bridged; err != nil && !errors.Is(err, context.Canceled) {
				t.Logf("bridge: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	res, err = vm.Wait()
	t.Logf("guest: %s (%v after the VM started, guest uptime %v)", res.Line(), res.Elapsed.Round(10*time.Millisecond), res.GuestTime)
	if err != nil {
		t.Fatal(err)
	}
	return res, stop
}

// toPTY bridges the guest's serial line to the pty of an emulated modem
// (whose other side the guest's chat dials).
func toPTY(path string) func(context.Context, *pppdvm.VM) error {
	return func(ctx context.Context, vm *pppdvm.VM) error { return vm.BridgeToPTY(ctx, path) }
}

// tcpLine is a TCP line of the box (raw: data mode from the start) for
// pppd in the VM to dial; the OS picks its port (tcpLineAddr).
const tcpLine = `
[line tcp0]
kind tcp
listen 127.0.0.1:0
max-connections 4
idle-timeout 120
`

// toTCPLine bridges the guest's serial line over a TCP connection to the
// world's line tcp0.
func toTCPLine(t *testing.T, w *world) func(context.Context, *pppdvm.VM) error {
	t.Helper()
	addr := lineAddr(t, w, "tcp0")
	return func(ctx context.Context, vm *pppdvm.VM) error {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return vm.Bridge(ctx, nc)
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

// checkPage checks the guest fetched vmPage's page whole.
func checkPage(t *testing.T, res pppdvm.Result, sum string, size int) {
	t.Helper()
	if res.HTTP != "ok" || res.HTTPBytes != size || res.HTTPSHA256 != sum {
		t.Errorf("HTTP fetch %s, %d bytes, sha256 %s; want ok, %d bytes, %s", res.HTTP, res.HTTPBytes, res.HTTPSHA256, size, sum)
	}
}
