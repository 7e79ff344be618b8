package box_test

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/sim/smcaller"
	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/softmodem"
)

// TestPPPOverSoftmodem: a caller's V.22bis modem dials an extension whose
// dial plan is Modem(answer); the box answers with its own software modem
// on the RTP and serves PPP on it as on a hardware line; the project's
// PPP client authenticates (PAP, [users]) and gets an address.
func TestPPPOverSoftmodem(t *testing.T) {
	if testing.Short() {
		t.Skip("real time: a modem call and a PPP session, about 15 s")
	}
	r := newRig(t)
	text := mustReplace(t, r.configText(""), "exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)",
		"exten => 5550000,1,Modem(answer)\nexten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)")
	if err := os.WriteFile(r.cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	b := r.startBox()
	t.Cleanup(func() {
		if t.Failed() { // what the box's modem saw
			for _, ev := range b.events.all() {
				if m, ok := ev.(bus.ModemStats); ok {
					t.Logf("%v", m)
				}
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	call, err := smcaller.Dial(ctx, smcaller.Options{Box: netipLoopback(r.port), User: "pap2t-client", Password: "password",
		Number: "5550000", Modulation: softmodem.V22bis})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	caller := call.Modem
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	err = call.WaitConnect(cctx)
	ccancel()
	if err != nil {
		t.Fatalf("%v: %+v", err, caller.Stats())
	}
	cl, err := ppp.Dial(ctx, caller, ppp.ClientConfig{User: "dial", Password: "dial"}, r.log("client"))
	if err != nil {
		t.Fatalf("PPP over the softmodem: %v (caller %+v)", err, caller.Stats())
	}
	defer cl.Close()
	if !cl.Local().IsValid() || cl.Local().IsUnspecified() {
		t.Errorf("client address %v", cl.Local())
	}
	t.Logf("PPP up over V.22bis %d bit/s: client %v, box %v", caller.Stats().Rate, cl.Local(), cl.Remote())
	// Ping the box's end of the link (RFC 792 echo) over the softmodem.
	if err := cl.WritePacket(pingPacket(cl.Local(), cl.Remote(), 7)); err != nil {
		t.Fatal(err)
	}
	reply := make(chan bool, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := cl.ReadPacket(buf)
			if err != nil {
				return
			}
			p := buf[:n]
			if n >= 28 && p[0] == 0x45 && p[9] == 1 && p[20] == 0 && binary.BigEndian.Uint16(p[24:]) == 7 {
				reply <- true
				return
			}
		}
	}()
	select {
	case <-reply:
		t.Logf("ping %v over the softmodem: reply", cl.Remote())
	case <-time.After(10 * time.Second):
		t.Errorf("no echo reply from %v", cl.Remote())
	}
	st := b.Status()
	if len(st.Sessions) != 1 || len(st.Calls) != 1 || st.Calls[0].To != "Modem/V.22bis/2400" {
		t.Errorf("status: calls %+v sessions %+v", st.Calls, st.Sessions)
	}
	var up bool
	for _, ev := range b.events.all() {
		if m, ok := ev.(bus.ModemStats); ok && m.Rate == 2400 {
			up = true
		}
	}
	if !up {
		t.Error("no modem.stats event at 2400 bit/s")
	}
}

// pingPacket is an IPv4 ICMP echo request with identifier id.
func pingPacket(src, dst netip.Addr, id uint16) []byte {
	p := make([]byte, 20+8+32)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 1
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:], s4[:])
	copy(p[16:], d4[:])
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:20], 0))
	icmp := p[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], 1)
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, 0))
	return p
}
