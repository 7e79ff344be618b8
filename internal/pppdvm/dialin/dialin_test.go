package dialin

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/pppdvm"
	"github.com/isp-box/isp-box/internal/pppdvm/pppdvmtest"
	"github.com/isp-box/isp-box/internal/sim/hayes"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/ppp"
)

// TestChatDialIn: chat in the VM dials ATDT88567682 on an emulated modem
// (the guest's serial line bridged to its pty), the exchange rings the ISP's
// emulated modem, the project's modem.Line answers it (mgetty's job) and
// hands the call to ppp.Serve (pppd's job), and Debian's pppd gets the
// seed's address and DNS and pings the gateway.
func TestChatDialIn(t *testing.T) {
	pppdvmtest.NeedVM(t)
	var (
		gateway = netip.MustParseAddr("192.168.32.1")
		client  = netip.MustParseAddr("192.168.32.105")
		dns     = netip.MustParseAddr("8.8.8.8")
	)
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
	pcfg.DNS = []netip.Addr{dns}
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
	go func() { bridged <- vm.BridgeToPTY(bctx, clientModem.Path()) }()

	res, werr := vm.Wait()
	bcancel()
	if err := <-bridged; err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("bridge: %v", err)
	}
	t.Logf("guest: %s (%v after Start)", res.Line(), res.Elapsed.Round(10*time.Millisecond))
	if werr != nil {
		t.Fatal(werr)
	}
	if res.Local != client || res.Remote != gateway || res.DNS1 != dns || res.DNS2 != dns {
		t.Errorf("pppd got local %v remote %v dns %v %v, want %v %v %v %v", res.Local, res.Remote, res.DNS1, res.DNS2, client, gateway, dns, dns)
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
