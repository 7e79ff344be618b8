package ata_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/phone"
	"github.com/isp-box/isp-box/pbx"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// TestSoftmodemLine: a Softmodem port dials the box's PBX, whose dial
// plan answers with the box's own modem (Modem(answer)); the port's
// software modem trains with it over G.711 RTP, CONNECT comes at 2400
// bit/s, and a line typed on the carrier comes back from the PBX's echo
// handler.
func TestSoftmodemLine(t *testing.T) {
	if testing.Short() {
		t.Skip("real time: a V.22bis call, about 10 s")
	}
	cfg := pbx.DefaultConfig()
	cfg.General.UDPBindAddr = netip.MustParseAddrPort("127.0.0.1:0")
	p := pbx.DefaultPeer("pap2t-client")
	p.Secret, p.Host, p.NAT, p.Qualify, p.File, p.Line = "password", "dynamic", "no", 0, "sip.conf", 1
	cfg.Peers = append(cfg.Peers, p)
	cfg.Dialplan = []dialplan.Line{{Context: "default", Key: "exten", Value: "5550000,1,Modem(answer)", File: "extensions.conf", Line: 1}}
	echo := func(ctx context.Context, mc pbx.ModemCall) error { _, err := io.Copy(mc, mc); return err }
	s, err := pbx.New(cfg, pbx.Options{Log: slog.New(slog.DiscardHandler), Modem: echo})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-s.Ready()

	if _, err := ata.New(ata.Options{Lines: []ata.LineConfig{{User: "x", Softmodem: "v32"}}}); err == nil {
		t.Error("Softmodem v32 accepted")
	}
	a := startATA(t, ata.Options{Lines: []ata.LineConfig{
		{Name: "line2", User: "pap2t-client", Password: "password", Registrar: s.Addr(), Softmodem: "v22bis"},
	}})
	l := a.Line(0)
	deadline := time.Now().Add(10 * time.Second)
	for !l.Registered() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer dcancel()
	k, err := l.Dial(dctx, "5550000")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer k.Close()
	if k.Speed() != 2400 {
		t.Errorf("CONNECT %d, want 2400", k.Speed())
	}
	if ec, ok := k.(phone.ErrorControl); !ok || ec.ErrorControlled() {
		t.Error("the softmodem carrier claims error control (the hayes modem would say CONNECT 2400/ARQ)")
	}
	if li := l.Info(); li.Payload != "PCMU" {
		t.Errorf("payload %q, want PCMU (a softmodem port offers G.711 only)", li.Payload)
	}
	// Without error correction a hole in the real-time audio on a loaded
	// machine may garble a character: one of three lines must come back.
	r := bufio.NewReader(k)
	got := make(chan string, 8)
	go func() {
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				close(got)
				return
			}
			got <- s
		}
	}()
	ok := false
	for try := 0; try < 3 && !ok; try++ {
		want := "the quick brown fox " + string(rune('a'+try)) + "\r\n"
		k.Write([]byte(want))
		timeout := time.After(5 * time.Second)
	wait:
		for {
			select {
			case s := <-got:
				if strings.HasSuffix(s, want) {
					ok = true
					break wait
				}
			case <-timeout:
				break wait
			}
		}
	}
	if !ok {
		t.Errorf("no line came back whole; media %+v", l.Info().Media)
	}
	t.Logf("media: %+v", l.Info().Media)
}
