package pbx

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// TestBenchServe runs a PBX for scripts/bench-sip.sh until SIGTERM:
// PBX_BENCH_ADDR is where it listens, PBX_BENCH_UAS the sipp UAS it dials
// (peer bench-uas), and peer bench-uac (secret "bench") may call any
// number. PBX_BENCH_RELAY=1 anchors the media.
func TestBenchServe(t *testing.T) {
	addr := testutil.EnvOrSkip(t, "PBX_BENCH_ADDR", "run by scripts/bench-sip.sh")
	cfg := DefaultConfig()
	cfg.General.UDPBindAddr = netip.MustParseAddrPort(addr)
	cfg.General.MaxAuthFailures = 1 << 30
	// sipp calls from one address:port it never registered: as a stranger
	// it would get sourcerate datagrams and guessrate digests a second.
	cfg.General.SourceRate, cfg.General.GuessRate, cfg.General.MaxCalls = -1, -1, -1
	uac := DefaultPeer("bench-uac")
	uac.Secret = "bench"
	uac.Host = "dynamic"
	uas := DefaultPeer("bench-uas")
	uas.Host = os.Getenv("PBX_BENCH_UAS")
	uas.NAT = "no"
	uas.DirectMedia = os.Getenv("PBX_BENCH_RELAY") != "1"
	cfg.Peers = []Peer{uac, uas}
	cfg.Dialplan = []dialplan.Line{{Context: "default", Key: "exten", Value: "_X!,1,Dial(SIP/bench-uas,20)", File: "bench", Line: 1}}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-s.Ready()
		fmt.Println("READY", s.Addr())
	}()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
