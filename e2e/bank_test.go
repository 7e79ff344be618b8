package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/demo"
)

// bank describes a generated config: n ISP modem lines, each behind its
// own ATA port, and n callers' ATA ports.
type bank struct {
	n    int
	hunt bool // one number rings a hunt group of every modem; else caller i dials 7000+i, which rings modem i
	// echo is the server's lcp-echo-interval in seconds (0 = none).
	echo int
	// pool and gateway: a /24 holds 253 clients; bigger banks need more.
	pool, gateway string
	// qualify is the peers' qualify= in ms; 0 = 200, the seed's.
	qualify int
	// devices, if set, is the directory of the modems' device links
	// (tty-ttyS1, ...), written into the config for a box run as its own
	// process; with a World (which sets the devices) it stays empty.
	devices string
	// sip is udpbindaddr; "" = 127.0.0.1:5060 (a World replaces it).
	sip string
}

func (b bank) number(i int) string {
	if b.hunt {
		return "5550000"
	}
	return fmt.Sprintf("%d", 7000+i)
}

// config writes the bank's config in the box's syntax: sip.conf peers
// from templates, extensions.conf, mgetty.config, pppd options, pap-secrets.
func (b bank) config() string {
	pool, gw := b.pool, b.gateway
	if pool == "" {
		pool, gw = "192.168.32.0/24", "192.168.32.1"
	}
	q := b.qualify
	if q == 0 {
		q = 200
	}
	var s strings.Builder
	sip := b.sip
	if sip == "" {
		sip = "127.0.0.1:5060"
	}
	fmt.Fprintf(&s, `[general]
udpbindaddr=%s
context=from-callers

[network]
gateway = %s
pool = %s

[ata-port](!)
type=friend
host=dynamic
qualify=%[4]d
directmedia=yes

[modem-port](!,ata-port)
context=from-bank
call-limit=1
huntgroup=bank

[caller-port](!,ata-port)
context=from-callers

`, sip, gw, pool, q)
	for i := 1; i <= b.n; i++ {
		fmt.Fprintf(&s, "[modem%d](modem-port)\nsecret=m%d\n[caller%d](caller-port)\nsecret=c%d\n", i, i, i, i)
	}
	s.WriteString("\n[from-callers]\n")
	if b.hunt {
		s.WriteString("exten => _X!,1,Dial(HUNT/bank,30)\nsame => n,Busy()\n")
	} else {
		for i := 1; i <= b.n; i++ {
			fmt.Fprintf(&s, "exten => %s,1,Dial(SIP/modem%d,30)\n", b.number(i), i)
		}
	}
	s.WriteString("\n[from-bank]\nexten => _X!,1,Congestion()\n\n[mgetty]\nrings 1\nspeed 115200\n")
	for i := 1; i <= b.n; i++ {
		fmt.Fprintf(&s, "port ttyS%d\n peer modem%d\n", i, i)
		if b.devices != "" {
			fmt.Fprintf(&s, " device %s/tty-ttyS%d\n", b.devices, i)
		}
	}
	fmt.Fprintf(&s, "\n[ppp]\nms-dns %s\nasyncmap 0\nauth\nrequire-pap\n", gw)
	if b.devices != "" {
		s.WriteString("nolock\nnocrtscts\n") // ptys: no UUCP lock, no CTS
	}
	if b.echo > 0 {
		fmt.Fprintf(&s, "lcp-echo-interval %d\nlcp-echo-failure 5\n", b.echo)
	}
	s.WriteString("\n[users]\ndial * \"dial\" *\n")
	return s.String()
}

// dialAll dials from every caller at once and returns the sessions (nil
// where a dial failed), the errors, and each dial's time to PPP up.
func dialAll(ctx context.Context, w *world, b bank, o demo.DialOptions) ([]*demo.Session, []error, []time.Duration) {
	return dialEach(ctx, b, o, func(i int) string { return w.Clients[fmt.Sprintf("caller%d", i)].Path() })
}

// dialEach dials from caller i's modem at path(i), i = 1..b.n, all at once.
func dialEach(ctx context.Context, b bank, o demo.DialOptions, path func(int) string) ([]*demo.Session, []error, []time.Duration) {
	sess := make([]*demo.Session, b.n)
	errs := make([]error, b.n)
	took := make([]time.Duration, b.n)
	var wg sync.WaitGroup
	for i := 1; i <= b.n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do := o
			do.Number, do.User, do.Password = b.number(i), "dial", "dial"
			start := time.Now()
			sess[i-1], errs[i-1] = demo.Dial(ctx, path(i), do)
			took[i-1] = time.Since(start)
		}()
	}
	wg.Wait()
	return sess, errs, took
}

// TestFiftyDialIns: fifty callers dial one number at once; the hunt group
// spreads the calls over fifty modem lines, each gets its own address from
// the pool, pings the gateway and fetches a page through the NAT.
func TestFiftyDialIns(t *testing.T) {
	if testing.Short() {
		t.Skip("fifty dial-ins through the whole chain")
	}
	b := bank{n: 50, hunt: true}
	w := startWorld(t, parse(t, "bank50.conf", b.config()), worldOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	page := strings.Repeat("fifty modems, one number. ", 40)
	port := webServer(t, page)

	start := time.Now()
	sess, errs, _ := dialAll(ctx, w, b, demo.DialOptions{})
	up := time.Since(start)
	defer func() {
		for _, s := range sess {
			if s != nil {
				s.HangUp(ctx)
			}
		}
	}()
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			t.Errorf("caller%d: %v", i+1, err)
		}
	}
	if failed > 0 {
		t.FailNow()
	}
	t.Logf("50 callers up %v after dialling at once", up.Round(time.Millisecond))

	addrs := map[netip.Addr]int{}
	pool := netip.MustParsePrefix("192.168.32.0/24")
	for i, s := range sess {
		a := s.PPP.Local()
		if !pool.Contains(a) || a == gateway {
			t.Errorf("caller%d got %v: not a client address of the pool", i+1, a)
		}
		if j, dup := addrs[a]; dup {
			t.Errorf("caller%d and caller%d both got %v", j, i+1, a)
		}
		addrs[a] = i + 1
	}
	// Traffic on every link at once.
	var wg sync.WaitGroup
	terrs := make([]error, len(sess))
	for i, s := range sess {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Net.Ping(ctx, s.PPP.Remote()); err != nil {
				terrs[i] = fmt.Errorf("ping: %w", err)
				return
			}
			terrs[i] = fetch(ctx, s, port, page)
		}()
	}
	wg.Wait()
	for i, err := range terrs {
		if err != nil {
			t.Errorf("caller%d (%v): %v", i+1, sess[i].PPP.Local(), err)
		}
	}
	st := w.Box.Status()
	if len(st.Sessions) != 50 || len(st.Calls) != 50 {
		t.Errorf("box: %d sessions, %d calls, want 50 each", len(st.Sessions), len(st.Calls))
	}
	lines := map[string]bool{}
	for _, ss := range st.Sessions {
		if ss.BytesIn == 0 || ss.BytesOut < uint64(len(page)) {
			t.Errorf("session %s on %s: %d bytes in, %d out", ss.ID, ss.Line, ss.BytesIn, ss.BytesOut)
		}
		lines[ss.Line] = true
	}
	if len(lines) != 50 {
		t.Errorf("sessions on %d distinct lines, want 50", len(lines))
	}

	hstart := time.Now()
	for i, s := range sess {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.HangUp(ctx); err != nil {
				t.Errorf("caller%d hang-up: %v", i+1, err)
			}
		}()
	}
	wg.Wait()
	sess = nil
	if err := w.WaitLinesIdle(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("all 50 torn down %v after hanging up", time.Since(hstart).Round(time.Millisecond))
}
