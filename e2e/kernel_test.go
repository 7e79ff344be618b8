package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/netstack"
)

// kernelChildEnv marks the re-executed test binary that runs the box
// inside the box namespace.
const kernelChildEnv = "ISPBOX_E2E_KERNEL_CHILD"

// The names the box uses in its namespace (the config's defaults).
const (
	tunDev   = "ispbox0"
	nftTable = "isp-box"
)

// TestKernelDialIn is the whole chain in kernel network mode, as root:
// isp-box with [network] mode = kernel in a namespace of its own whose
// uplink (a veth) leads to a server namespace, the "internet". A client
// modem dials through the ATA and the PBX to the box's modem line, PPP
// comes up, and the client's traffic leaves through the TUN device and
// the nftables masquerade: the server sees the uplink's address, not the
// client's; a spoofed packet is dropped and counted; the MSS of a passing
// SYN is clamped; after hang-up and stop, the box's table, TUN and routes
// are gone.
//
// The box runs in a child process (this test binary again, under
// `ip netns exec`), so that every thread of it is in the box namespace;
// the servers run here, their sockets made in the server namespace.
func TestKernelDialIn(t *testing.T) {
	switch os.Getenv(kernelChildEnv) {
	case "":
	case "crash":
		kernelCrashChild(t)
		return
	default:
		kernelChild(t)
		return
	}
	if testing.Short() {
		t.Skip("dials in through the whole chain")
	}
	needNetAdmin(t)
	start := time.Now()
	tp := newNetTopo(t)
	srv := tp.serve(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	child := func(role string) *exec.Cmd {
		c := exec.CommandContext(ctx, "ip", "netns", "exec", tp.box,
			os.Args[0], "-test.run=^TestKernelDialIn$", "-test.v", "-test.count=1", "-test.timeout=150s")
		c.Env = append(os.Environ(), kernelChildEnv+"="+role)
		c.WaitDelay = 10 * time.Second
		return c
	}

	// First a box that is killed with SIGKILL while a client is dialled
	// in: its table stays in the kernel (its TUN goes with the process).
	crashBox(t, child("crash"))
	if out := testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "set", "ip", nftTable, "clients"); !strings.Contains(out, client.String()) {
		t.Fatalf("no stale table with the client after kill -9 (nothing left for the restart to clean):\n%s", out)
	}
	if out := testutil.Run(t, "ip", "-n", tp.box, "link", "show"); strings.Contains(out, tunDev) {
		t.Fatalf("TUN device outlived the killed box:\n%s", out)
	}

	// Then the box again: it removes the stale table, and the dial-in
	// runs through the kernel.
	c := child("after-crash")
	out, err := c.CombinedOutput()
	if err != nil || testing.Verbose() || verbose() {
		t.Logf("child in %s:\n%s", tp.box, out)
	}
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestKernelDialIn") {
		t.Fatal("child did not pass (skipped?)")
	}

	// What the server received: the masqueraded datagrams of the client
	// and never the spoofed one.
	got := srv.describe()
	if got == "" {
		t.Fatal("the server received no datagram")
	}
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if l != uplinkAddr+" good" {
			t.Errorf("server received %q; want only %q", l, uplinkAddr+" good")
		}
	}

	// The process is gone; the kernel keeps what it did not remove.
	if out := testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "tables"); strings.Contains(out, nftTable) {
		t.Errorf("nftables table left after the box exited:\n%s", out)
	}
	if out := testutil.Run(t, "ip", "-n", tp.box, "link", "show"); strings.Contains(out, tunDev) {
		t.Errorf("TUN device left after the box exited:\n%s", out)
	}
	t.Logf("kernel dial-in checked in %v", time.Since(start).Round(time.Millisecond))
}

// kernelChild is the box's side: it runs in the box namespace.
func kernelChild(t *testing.T) {
	start := time.Now()
	step := func(format string, args ...any) {
		t.Logf("%6.2fs "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}
	sh := func(args ...string) string { t.Helper(); return testutil.Run(t, args...) }
	forwardBefore := strings.TrimSpace(sh("cat", "/proc/sys/net/ipv4/ip_forward"))

	cfg := kernelConfig(t)
	w := startWorld(t, cfg, worldOpts{keepNetwork: true})
	step("box running (kernel mode), ATA registered")
	// The table a killed box left (TestKernelDialIn kills one first) was
	// removed at start, and the box said so.
	stale := waitEvent(t, w, 30*time.Second, func(e bus.Notice) bool {
		return e.Source == "netstack" && strings.Contains(e.Text, "removed stale nftables table")
	})
	step("%s", stale)
	if out := sh("nft", "list", "set", "ip", nftTable, "clients"); strings.Contains(out, client.String()) {
		t.Fatalf("the killed box's client %v is still in the table before anyone dialled:\n%s", client, out)
	}
	if got := w.Box.Status().Network; got != string(netstack.Kernel) {
		t.Fatalf("box status network %q", got)
	}
	if out := sh("nft", "list", "tables"); !strings.Contains(out, "table ip "+nftTable) {
		t.Fatalf("nft list tables while the box runs:\n%s", out)
	}
	if out := sh("ip", "link", "show", tunDev); !strings.Contains(out, "UP") {
		t.Fatalf("TUN device:\n%s", out)
	}
	if got := strings.TrimSpace(sh("cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
		t.Fatalf("ip_forward %q while the box runs", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := demo.Dial(ctx, w.Clients["pap2t-client"].Path(), demo.DialOptions{Number: "88567682"})
	if err != nil {
		t.Fatal(err)
	}
	step("dialled in: %s, PPP local %v gateway %v", s.Connect, s.PPP.Local(), s.PPP.Remote())
	if s.PPP.Local() != client || s.PPP.Remote() != gateway {
		t.Fatalf("PPP local %v remote %v, want %v %v", s.PPP.Local(), s.PPP.Remote(), client, gateway)
	}
	hungUp := false
	defer func() {
		if !hungUp {
			s.HangUp(context.Background())
		}
	}()
	// The session's address in the table and its route through the TUN.
	if out := sh("nft", "list", "set", "ip", nftTable, "clients"); !strings.Contains(out, client.String()) {
		t.Fatalf("client %v not in the table's set:\n%s", client, out)
	}
	if out := sh("ip", "route", "show", client.String()+"/32"); !strings.Contains(out, "dev "+tunDev) {
		t.Fatalf("no route to the client through %s: %q", tunDev, out)
	}

	// HTTP through the masquerade: the server saw the uplink's address.
	hc := s.Net.HTTPClient()
	url := fmt.Sprintf("http://%s:%d/", serverAddr, httpPort)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	hc.CloseIdleConnections()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	if host, _, _ := net.SplitHostPort(string(body)); host != uplinkAddr {
		t.Fatalf("the server saw the client as %q; want the uplink %s (masquerade), not %v", body, uplinkAddr, client)
	}
	step("HTTP GET %s: 200, the server saw %s", url, body)

	// MSS: the client's stack (MTU 1500) offers 1460; the box clamps the
	// SYN to [network] mtu - 40 = 960 on its way out.
	conn, err := s.Net.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", serverAddr, mssPort))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := io.ReadAll(conn)
	conn.Close()
	if err != nil {
		t.Fatalf("MSS server: %v", err)
	}
	var (
		seen string
		mss  int
	)
	if _, err := fmt.Sscan(string(line), &seen, &mss); err != nil {
		t.Fatalf("MSS server said %q: %v", line, err)
	}
	if mss < 500 || mss > 960 {
		t.Fatalf("server's TCP_MAXSEG %d (from %s): the SYN was not clamped to 960", mss, seen)
	}
	step("TCP to the server: its MSS %d (clamped to 960)", mss)

	// ICMP echo to the server through the kernel.
	rtt, err := s.Net.Ping(ctx, netip.MustParseAddr(serverAddr))
	if err != nil {
		t.Fatalf("ping %s: %v", serverAddr, err)
	}
	step("ping %s: %v", serverAddr, rtt)

	// A spoofed datagram (another address of the pool), straight into
	// PPP, then a good one from the client's stack. They take the same
	// path, so had the spoofed one passed, the server would have it
	// before the good one, and the server's reply lists all it received.
	spoofed := netip.MustParseAddr("192.168.32.99")
	dst := netip.AddrPortFrom(netip.MustParseAddr(serverAddr), udpPort)
	if err := s.PPP.WritePacket(udpPacket(netip.AddrPortFrom(spoofed, 5000), dst, []byte("spoofed"))); err != nil {
		t.Fatal(err)
	}
	reply := udpExchange(t, ctx, s, dst, "good")
	for _, l := range strings.Split(strings.TrimSpace(reply), "\n") {
		if l != uplinkAddr+" good" {
			t.Fatalf("the server received %q; want only masqueraded good datagrams (%s good)", reply, uplinkAddr)
		}
	}
	drop := waitEvent(t, w, 30*time.Second, func(e bus.NetDropped) bool { return e.Reason == bus.DropSpoofed })
	counter := bus.DropSpoofed.Metric()
	var n uint64
	found := false
	for _, c := range w.Box.Status().Counters {
		if c.Name == counter {
			n, found = c.Value, true
		}
	}
	if !found || n != 1 {
		t.Fatalf("box status counter %q = %d (present %v), want 1", counter, n, found)
	}
	step("spoofed datagram from %v dropped: %s; counter %q = %d; the server got %q", spoofed, drop, counter, n, reply)

	// Hang up: the session's address leaves the table, its route goes.
	if err := s.HangUp(ctx); err != nil {
		t.Fatal(err)
	}
	hungUp = true
	if err := w.WaitLinesIdle(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, w, 30*time.Second, func(e bus.PPPDown) bool { return true })
	step("hung up; line idle; box counters now %v", w.Box.Status().Counters)
	if out := sh("nft", "list", "set", "ip", nftTable, "clients"); strings.Contains(out, client.String()) {
		t.Errorf("client %v still in the table's set after hang-up:\n%s", client, out)
	}
	if out := sh("ip", "route", "show", client.String()+"/32"); strings.TrimSpace(out) != "" {
		t.Errorf("route to the client left after hang-up: %q", out)
	}

	// Dial in again (the line's fixed address is handed out once more and
	// routed again), and stop the World with this session up: the ATA is
	// unplugged (the box's line loses the carrier), then the box stops;
	// the session's address leaves the table before the table goes.
	s2, err := demo.Dial(ctx, w.Clients["pap2t-client"].Path(), demo.DialOptions{Number: "88567682"})
	if err != nil {
		t.Fatalf("second dial-in: %v", err)
	}
	defer s2.HangUp(context.Background())
	if s2.PPP.Local() != client {
		t.Fatalf("second session: PPP local %v, want %v", s2.PPP.Local(), client)
	}
	if reply := udpExchange(t, ctx, s2, dst, "good"); !strings.HasSuffix(reply, uplinkAddr+" good\n") {
		t.Fatalf("second session: the server received %q", reply)
	}
	step("dialled in again; UDP through the masquerade")

	// Stop: everything the box put in the kernel is removed.
	if err := w.Close(); err != nil {
		t.Fatalf("World.Close: %v", err)
	}
	step("World stopped (ATA, then the box) with a session up")
	select {
	case <-s2.PPP.Done():
		step("the client saw its link end: %s", s2.PPP.Cause())
	case <-time.After(30 * time.Second):
		t.Errorf("the client's PPP still up 30 s after the box stopped")
	}
	if out := sh("nft", "list", "tables"); strings.Contains(out, nftTable) {
		t.Errorf("nft list tables after the box stopped:\n%s", out)
	}
	if out := sh("ip", "link", "show"); strings.Contains(out, tunDev) {
		t.Errorf("TUN device left after the box stopped:\n%s", out)
	}
	if got := strings.TrimSpace(sh("cat", "/proc/sys/net/ipv4/ip_forward")); got != forwardBefore {
		t.Errorf("ip_forward %q after the box stopped, was %q", got, forwardBefore)
	}
}

// kernelConfig is examples/pap2t.conf in kernel mode with the veth as
// the uplink.
func kernelConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg := pap2t(t, func(s string) string {
		s = strings.Replace(s, "network = userspace", "network = kernel", 1)
		// mtu 1000: the clamp (960) is visible against the client's 1460.
		return strings.Replace(s, "pool = 192.168.32.0/24\n", "pool = 192.168.32.0/24\nuplink = "+uplinkDev+"\nmtu = 1000\nallow = "+serverAddr+"\n", 1)
	})
	if cfg.Net.Mode != netstack.Kernel || cfg.Net.Uplink != uplinkDev {
		t.Fatalf("config: network %q uplink %q: the rewrite of pap2t.conf did not apply", cfg.Net.Mode, cfg.Net.Uplink)
	}
	return cfg
}

// kernelReady is what the crash child prints once a client is dialled in.
const kernelReady = "KERNEL-BOX-READY"

// kernelCrashChild runs the box with a client dialled in until it is
// killed with SIGKILL.
func kernelCrashChild(t *testing.T) {
	w := startWorld(t, kernelConfig(t), worldOpts{keepNetwork: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := demo.Dial(ctx, w.Clients["pap2t-client"].Path(), demo.DialOptions{Number: "88567682"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Net.Ping(ctx, netip.MustParseAddr(serverAddr)); err != nil {
		t.Fatal(err)
	}
	fmt.Println(kernelReady)
	<-ctx.Done() // killed long before
	t.Fatal("not killed")
}

// crashBox starts the crash child, waits until it is ready and kills it
// with SIGKILL: none of its own cleanup runs.
func crashBox(t *testing.T, c *exec.Cmd) {
	t.Helper()
	var out testutil.LogBuffer
	c.Stderr = &out
	pr, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		ok := false
		for sc.Scan() {
			fmt.Fprintln(&out, sc.Text())
			if sc.Text() == kernelReady && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	ok := <-ready
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	if !ok || testing.Verbose() || verbose() {
		t.Logf("crash child:\n%s", out.String())
	}
	if !ok {
		t.Fatal("the box to be killed never got a client dialled in")
	}
}

// udpExchange sends payload from the client's stack to dst until the
// server answers (UDP may be lost on a loaded machine) and returns the
// answer.
func udpExchange(t *testing.T, ctx context.Context, s *demo.Session, dst netip.AddrPort, payload string) string {
	t.Helper()
	conn, err := s.Net.DialContext(ctx, "udp", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 2048)
	for try := 0; try < 10; try++ {
		if _, err := conn.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := conn.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
		if ctx.Err() != nil {
			break
		}
	}
	t.Fatalf("no answer from the UDP server %v", dst)
	return ""
}
