package ata_test

// SCRATCH, not committed: interop with the real pbx and hayes.

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/pbx"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

func TestScratchPBX(t *testing.T) {
	cfg := pbx.DefaultConfig()
	cfg.General.UDPBindAddr = netip.MustParseAddrPort("127.0.0.1:0")
	for _, n := range []string{"pap2t-ispmodem", "pap2t-client"} {
		p := pbx.DefaultPeer(n)
		p.Secret = "password"
		p.Host = "dynamic"
		p.Qualify = 200
		p.NAT = "no"
		cfg.Peers = append(cfg.Peers, p)
	}
	cfg.Dialplan = []dialplan.Line{{Context: "default", Key: "exten", Value: "_X!,1,Dial(SIP/pap2t-ispmodem, 20)"}}
	var log *slog.Logger
	if os.Getenv("ATA_DEBUG") != "" {
		log = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := pbx.New(cfg, pbx.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	<-s.Ready()
	t.Logf("pbx at %v", s.Addr())
	a := startATA(t, ata.Options{Log: log, Lines: []ata.LineConfig{
		{Name: "isp", User: "pap2t-ispmodem", Password: "password", Registrar: s.Addr()},
		{Name: "client", User: "pap2t-client", Password: "password", Registrar: s.Addr()},
	}})
	waitFor(t, 10*time.Second, "registered", func() bool { return a.Line(0).Registered() && a.Line(1).Registered() })
	r := newRinger()
	a.Line(0).Plug(r)
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	defer dcancel()
	type res struct {
		k   interface{ io.ReadWriteCloser }
		err error
	}
	ch := make(chan res, 1)
	go func() { k, err := a.Line(1).Dial(dctx, "88567682"); ch <- res{k, err} }()
	in := r.next(t)
	k2, err := in.Answer(dctx)
	if err != nil {
		t.Fatal(err)
	}
	d := <-ch
	if d.err != nil {
		t.Fatal(d.err)
	}
	t.Logf("describe: %+v", a.Describe())
	t.Logf("peers: %+v", s.Peers())
	el, err := transfer(d.k, k2, randBytes(3600))
	t.Logf("3600 bytes in %v err %v", el, err)
	d.k.Close()
	_, err = k2.Read(make([]byte, 1))
	t.Logf("callee read after caller hangup: %v", err)
	time.Sleep(200 * time.Millisecond)
	t.Logf("calls: %+v", s.Calls())
}
