// Command regload registers N SIP lines with a box over loopback, from a
// few gateway sockets on distinct 127.x addresses, with digest auth, and
// then keeps answering the box's OPTIONS (as ATAs do) until it gets
// SIGINT or SIGTERM. scripts/bench-mem.sh uses it to measure the box's
// memory per registered line.
//
//	regload -box 127.0.0.1:5060 -n 10000 -prefix line -secret password
//
// Line i is PREFIX followed by i in five digits (line00000...). It prints
// "registered N in D" once every line has its 200.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/isp-box/isp-box/internal/sim/sipflood"
)

func main() {
	box := flag.String("box", "127.0.0.1:5060", "the box's SIP address (loopback)")
	n := flag.Int("n", 1000, "lines to register")
	prefix := flag.String("prefix", "line", "line name prefix")
	secret := flag.String("secret", "password", "every line's secret")
	gateways := flag.Int("gateways", 64, "gateway sockets (distinct 127.12.x.y addresses)")
	expires := flag.Int("expires", 3600, "Expires of each registration, s")
	flag.Parse()
	if err := run(*box, *n, *prefix, *secret, *gateways, *expires); err != nil {
		fmt.Fprintln(os.Stderr, "regload:", err)
		os.Exit(1)
	}
}

func run(boxAddr string, n int, prefix, secret string, gateways, expires int) error {
	box, err := netip.ParseAddrPort(boxAddr)
	if err != nil {
		return err
	}
	if !box.Addr().IsLoopback() {
		return fmt.Errorf("%v is not a loopback address", box)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	name := func(i int) string { return fmt.Sprintf("%s%05d", prefix, i) }
	uas := make([]*sipflood.UA, gateways)
	for k := range uas {
		ua, err := sipflood.NewUA(box, netip.AddrFrom4([4]byte{127, 12, byte(k / 250), byte(1 + k%250)}), name(k), secret)
		if err != nil {
			return err
		}
		defer ua.Close()
		uas[k] = ua
	}
	t0 := time.Now()
	if failed, first := sipflood.RegisterAll(ctx, uas, n, name, secret, expires); failed > 0 {
		return fmt.Errorf("%d of %d registrations failed, first: %w", failed, n, first)
	}
	fmt.Printf("registered %d in %v\n", n, time.Since(t0).Round(time.Millisecond))
	<-ctx.Done()
	return nil
}
