package netstack_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/netstack"
)

// topo is two network namespaces made by a test: "box" (where the Stack
// runs, with the uplink up0 10.77.0.1/24 and a default route) and "srv"
// (the world: eth0 10.77.0.2/24, no route back to the clients).
type topo struct {
	box, srv     string
	boxNS, srvNS netns.NsHandle
}

var topoSeq atomic.Int32

const (
	uplinkAddr = "10.77.0.1"
	serverAddr = "10.77.0.2"
)

func needRoot(t testing.TB) {
	t.Helper()
	testutil.NeedRoot(t, "kernel mode (network namespaces, TUN, nftables)", "ip", "nft")
}

func newTopo(t testing.TB) *topo {
	needRoot(t)
	id := fmt.Sprintf("%d-%d", os.Getpid(), topoSeq.Add(1))
	tp := &topo{box: "ispbox-t-box-" + id, srv: "ispbox-t-srv-" + id}
	for _, n := range []string{tp.box, tp.srv} {
		testutil.Run(t, "ip", "netns", "add", n)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	}
	testutil.Uplink(t, tp.box, tp.srv, "up0", uplinkAddr, serverAddr)
	var err error
	if tp.boxNS, err = netns.GetFromName(tp.box); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.boxNS.Close() })
	if tp.srvNS, err = netns.GetFromName(tp.srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.srvNS.Close() })
	return tp
}

// inNS runs fn on a fresh OS thread inside ns; the thread is thrown away
// afterwards (the goroutine ends locked), so no other goroutine runs there.
func inNS(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func kernelConfig() netstack.Config {
	cfg := netstack.DefaultConfig()
	cfg.Mode = netstack.Kernel
	cfg.MTU = 1000 // so that the MSS clamp (960) is visible
	cfg.DNS = []netip.Addr{netip.MustParseAddr(serverAddr)}
	// The world of these tests is a private network; the defaults that
	// refuse it are tested in TestKernelBlockPrivate and TestKernelBlockHost.
	cfg.BlockPrivate, cfg.BlockHost = false, false
	return cfg
}

func (tp *topo) stack(t testing.TB, cfg netstack.Config) *netstack.Stack {
	t.Helper()
	var (
		st  *netstack.Stack
		err error
	)
	inNS(t, tp.boxNS, func() { st, err = netstack.New(context.Background(), cfg, netstack.Options{}) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (tp *topo) listen(t testing.TB, network, addr string) (l net.Listener, pc net.PacketConn) {
	t.Helper()
	var err error
	inNS(t, tp.srvNS, func() {
		if network == "tcp" {
			l, err = net.Listen(network, addr)
		} else {
			pc, err = net.ListenPacket(network, addr)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l != nil {
			l.Close()
		}
		if pc != nil {
			pc.Close()
		}
	})
	return l, pc
}

func (tp *topo) nftTables(t *testing.T) string {
	return testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "tables")
}

var update = flag.Bool("update", false, "rewrite testdata golden files")

var counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// golden compares the box's nftables table (counters zeroed) with a file.
func (tp *topo) golden(t *testing.T, file string) {
	t.Helper()
	got := counterRE.ReplaceAllString(testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "table", "ip", "isp-box"), "counter packets 0 bytes 0")
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Fatalf("nft list table ip isp-box (-want +got):\n%s", diff)
	}
}

func TestKernelMasquerade(t *testing.T) {
	tp := newTopo(t)
	l, _ := tp.listen(t, "tcp", serverAddr+":8080")
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) }))
	ml, _ := tp.listen(t, "tcp", serverAddr+":9000")
	mss := make(chan int, 1)
	go func() {
		c, err := ml.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		raw, _ := c.(*net.TCPConn).SyscallConn()
		_ = raw.Control(func(fd uintptr) {
			v, _ := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG)
			mss <- v
		})
	}()
	_, upc := tp.listen(t, "udp", serverAddr+":9999")

	st := tp.stack(t, kernelConfig())
	if got := tp.nftTables(t); !strings.Contains(got, "table ip isp-box") {
		t.Fatalf("nft list tables while running:\n%s", got)
	}
	if got := testutil.Run(t, "ip", "netns", "exec", tp.box, "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(got) != "1" {
		t.Fatalf("ip_forward = %q", got)
	}
	sess, c := attach(t, st, "k1", netip.MustParseAddr("192.168.32.105"))
	tp.golden(t, "testdata/nft-table.golden")

	// HTTP through the masquerade: the server sees the uplink's address.
	req, _ := http.NewRequestWithContext(ctxT(t), "GET", "http://"+serverAddr+":8080/", nil)
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if host, _, _ := net.SplitHostPort(string(body)); host != uplinkAddr {
		t.Fatalf("server saw %q, want the uplink %s (not the client %s)", body, uplinkAddr, sess.Remote())
	}

	// MSS clamp: the client (MTU 1500) offers 1460; the box clamps the
	// passing SYN to MTU-40 = 960, so the server's MSS is at most that.
	conn, err := c.DialContext(ctxT(t), "tcp", serverAddr+":9000")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-mss:
		if v > 960 || v < 500 {
			t.Fatalf("server TCP_MAXSEG %d: SYN not clamped to 960", v)
		}
		t.Logf("server TCP_MAXSEG = %d", v)
	case <-time.After(20 * time.Second):
		t.Fatal("no connection at the MSS server")
	}
	conn.Close()
	if out := testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "chain", "ip", "isp-box", "forward"); !strings.Contains(out, "maxseg size set 960") {
		t.Fatalf("forward chain:\n%s", out)
	}

	// ICMP echo through the kernel.
	if _, err := c.Ping(ctxT(t), netip.MustParseAddr(serverAddr)); err != nil {
		t.Fatal(err)
	}

	// Spoofed datagram first, then a good one: only the good one arrives.
	dst := netip.MustParseAddrPort(serverAddr + ":9999")
	_ = sess.Send(udpPacket(netip.MustParseAddrPort("192.168.32.200:5000"), dst, []byte("spoofed")))
	_ = sess.Send(udpPacket(netip.MustParseAddrPort("10.77.0.9:5000"), dst, []byte("spoofed2")))
	_ = sess.Send(udpPacket(netip.AddrPortFrom(sess.Remote(), 5000), dst, []byte("good")))
	buf := make([]byte, 100)
	_ = upc.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, from, err := upc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "good" {
		t.Fatalf("server got %q from %v, %v; want only the good datagram", buf[:n], from, err)
	}
	if got := sess.Info().Reasons[netstack.ReasonSpoofed]; got != 2 {
		t.Fatalf("spoofed counted %d, want 2", got)
	}

	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := tp.nftTables(t); strings.Contains(got, "isp-box") {
		t.Fatalf("nft list tables after Close:\n%s", got)
	}
	if got := testutil.Run(t, "ip", "-n", tp.box, "link", "show"); strings.Contains(got, "ispbox0") {
		t.Fatalf("TUN left after Close:\n%s", got)
	}
	if got := testutil.Run(t, "ip", "netns", "exec", tp.box, "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(got) != "0" {
		t.Fatalf("ip_forward not restored: %q", got)
	}
}

// TestKernelProxyARP: a client address inside the uplink's subnet is
// answered for on the uplink (pppd's proxyarp), so a host of that LAN
// reaches the client directly.
func TestKernelProxyARP(t *testing.T) {
	tp := newTopo(t)
	st := tp.stack(t, kernelConfig())
	client := netip.MustParseAddr("10.77.0.50")
	sess, c := attach(t, st, "k1", client)
	if got := testutil.Run(t, "ip", "-n", tp.box, "neigh", "show", "proxy"); !strings.Contains(got, "10.77.0.50 dev up0") {
		t.Fatalf("no proxy entry:\n%s", got)
	}
	l, err := c.ListenTCP(netip.AddrPortFrom(client, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(conn, "client here")
			conn.Close()
		}
	}()
	var (
		got  []byte
		derr error
	)
	inNS(t, tp.srvNS, func() {
		var conn net.Conn
		conn, derr = net.DialTimeout("tcp", "10.77.0.50:7", 20*time.Second)
		if derr == nil {
			got, derr = io.ReadAll(conn)
			conn.Close()
		}
	})
	if derr != nil || string(got) != "client here" {
		t.Fatalf("server to client: %q, %v", got, derr)
	}
	sess.Close()
	if got := testutil.Run(t, "ip", "-n", tp.box, "neigh", "show", "proxy"); strings.Contains(got, "10.77.0.50") {
		t.Fatalf("proxy entry left after session close:\n%s", got)
	}
}

// TestKernelCrashHelper is the box process that TestKernelStaleRemoved
// kills with SIGKILL; it runs only when asked to.
func TestKernelCrashHelper(t *testing.T) {
	if os.Getenv("ISPBOX_NETSTACK_CRASH_HELPER") != "1" {
		t.Skip("helper process for TestKernelStaleRemoved")
	}
	st, err := netstack.New(context.Background(), kernelConfig(), netstack.Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := st.Attach(context.Background(), "crash", netip.MustParseAddr("10.77.0.50"), func([]byte) {}); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

func TestKernelStaleRemoved(t *testing.T) {
	tp := newTopo(t)
	cmd := exec.Command("ip", "netns", "exec", tp.box, os.Args[0], "-test.run=^TestKernelCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "ISPBOX_NETSTACK_CRASH_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if sc.Text() == "ready" {
			ready = true
			break
		}
		t.Logf("helper: %s", sc.Text())
	}
	if !ready {
		t.Fatal("helper never got ready")
	}
	// kill -9: the process's own cleanup never runs.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if got := tp.nftTables(t); !strings.Contains(got, "table ip isp-box") {
		t.Fatalf("no stale table after kill -9 (test is not testing anything):\n%s", got)
	}
	if got := testutil.Run(t, "ip", "-n", tp.box, "neigh", "show", "proxy"); !strings.Contains(got, "10.77.0.50") {
		t.Fatalf("no stale proxy entry after kill -9:\n%s", got)
	}

	st := tp.stack(t, kernelConfig())
	if got := testutil.Run(t, "ip", "-n", tp.box, "neigh", "show", "proxy"); strings.Contains(got, "10.77.0.50") {
		t.Fatalf("stale proxy entry survived the restart:\n%s", got)
	}
	if got := testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "set", "ip", "isp-box", "clients"); strings.Contains(got, "10.77.0.50") {
		t.Fatalf("stale table survived the restart:\n%s", got)
	}
	st.Close()
	if got := tp.nftTables(t); strings.Contains(got, "isp-box") {
		t.Fatalf("table left after Close:\n%s", got)
	}
}

func TestKernelIsolation(t *testing.T) {
	tp := newTopo(t)
	cfg := kernelConfig()
	cfg.Isolate = true
	st := tp.stack(t, cfg)
	if out := testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "chain", "ip", "isp-box", "forward"); !strings.Contains(out, `iifname "ispbox0" oifname "ispbox0"`) {
		t.Fatalf("no isolation rule:\n%s", out)
	}
	sa, _ := attach(t, st, "a", netip.Addr{})
	sb, _ := attach(t, st, "b", netip.Addr{})
	_ = sa.Send(udpPacket(netip.AddrPortFrom(sa.Remote(), 1), netip.AddrPortFrom(sb.Remote(), 2), []byte("x")))
	if got := sa.Info().Reasons[netstack.ReasonIsolated]; got != 1 {
		t.Fatalf("isolated drop counted %d", got)
	}
}

// TestUserspacePingPaths runs TestUserspacePingWorld in a network namespace
// of its own (ping_group_range is per namespace; the host's is left alone)
// for each way the process may or may not send ICMP: root with the
// kernel's default range "1 0" (no ping sockets: the raw-socket fallback),
// an unprivileged user with the range open (ping sockets), and an
// unprivileged user with the default range (neither: unreachable).
func TestUserspacePingPaths(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed (util-linux)")
	}
	// The test binary, where an unprivileged user may run it.
	dir, err := os.MkdirTemp("", "ispbox-ping-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := dir + "/netstack.test"
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, rng string
		nobody    bool
		want      netstack.ICMPPath
	}{
		{"root, range closed", "1 0", false, netstack.ICMPRaw},
		{"user, range open", "0 2147483647", true, netstack.ICMPPingSocket},
		{"user, range closed", "1 0", true, netstack.ICMPNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprintf("ispbox-t-ping-%d-%d", os.Getpid(), topoSeq.Add(1))
			testutil.Run(t, "ip", "netns", "add", ns)
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
			testutil.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
			// A veth pair stands in for a LAN interface (no dummy module needed).
			testutil.Run(t, "ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
			testutil.Run(t, "ip", "-n", ns, "addr", "add", "10.99.0.1/24", "dev", "v0")
			testutil.Run(t, "ip", "-n", ns, "link", "set", "v0", "up")
			testutil.Run(t, "ip", "-n", ns, "link", "set", "v1", "up")
			testutil.Run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ping_group_range="+tc.rng)
			args := []string{"netns", "exec", ns}
			if tc.nobody {
				args = append(args, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all")
			}
			args = append(args, exe, "-test.run=^TestUserspacePingWorld$", "-test.v", "-test.count=1")
			cmd := exec.Command("ip", args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "TMPDIR="+os.TempDir())
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "icmp path: "+string(tc.want)+"\n") || !strings.Contains(string(out), "--- PASS") {
				t.Fatalf("want path %q: %v\n%s", tc.want, err, out)
			}
		})
	}
}

// TestKernelBlockPrivate: with the defaults BlockPrivate and BlockHost the
// forward chain drops the clients' packets to private nets (the server
// namespace is 10.77.0.0/24) but for Allow and the DNS servers, and the
// input chain drops what they send to the box's own addresses.
func TestKernelBlockPrivate(t *testing.T) {
	tp := newTopo(t)
	cfg := kernelConfig()
	d := netstack.DefaultConfig()
	cfg.BlockPrivate, cfg.BlockHost = d.BlockPrivate, d.BlockHost
	cfg.DNS = []netip.Addr{netip.MustParseAddr("10.77.0.53")}
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("10.77.0.128/25")}
	st := tp.stack(t, cfg)
	sess, _ := attach(t, st, "k1", netip.Addr{})
	tp.golden(t, "testdata/nft-table-blockprivate.golden")
	if err := sess.Send(udpPacket(netip.AddrPortFrom(sess.Remote(), 5000), netip.MustParseAddrPort(serverAddr+":9999"), []byte("x"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var out string
	for time.Now().Before(deadline) {
		out = testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "chain", "ip", "isp-box", "forward")
		if strings.Contains(out, "ip daddr 10.0.0.0/8 counter packets 1 ") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "ip daddr 10.0.0.0/8 counter packets 1 ") {
		t.Fatalf("private destination not dropped by the table:\n%s", out)
	}
	// The box's own uplink address: its services on 0.0.0.0.
	if err := sess.Send(udpPacket(netip.AddrPortFrom(sess.Remote(), 5000), netip.MustParseAddrPort(uplinkAddr+":9999"), []byte("x"))); err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline) {
		out = testutil.Run(t, "ip", "netns", "exec", tp.box, "nft", "list", "chain", "ip", "isp-box", "input")
		if strings.Contains(out, `iifname "ispbox0" counter packets 1 `) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, `iifname "ispbox0" counter packets 1 `) {
		t.Fatalf("the box's own address not dropped by the input chain:\n%s", out)
	}

	// Clients (in 192.168.0.0/16 themselves) still reach each other: that
	// is Isolate's business, not BlockPrivate's.
	got := make(chan []byte, 1)
	sb, err := st.Attach(context.Background(), "k2", netip.Addr{}, func(p []byte) {
		select {
		case got <- append([]byte(nil), p...):
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if err := sess.Send(udpPacket(netip.AddrPortFrom(sess.Remote(), 5000), netip.AddrPortFrom(sb.Remote(), 6000), []byte("hi b"))); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if netip.AddrFrom4([4]byte(p[12:16])) != sess.Remote() || string(p[28:]) != "hi b" {
			t.Fatalf("b got %x", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("client to client blocked by BlockPrivate")
	}
}

// TestKernelRefusesRunningBox: a second box with the same TUN name in the
// same namespace must not take over the first one's device and table.
func TestKernelRefusesRunningBox(t *testing.T) {
	tp := newTopo(t)
	tp.stack(t, kernelConfig())
	var err error
	inNS(t, tp.boxNS, func() { _, err = netstack.New(context.Background(), kernelConfig(), netstack.Options{}) })
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second box: %v", err)
	}
	if got := tp.nftTables(t); !strings.Contains(got, "table ip isp-box") {
		t.Fatalf("first box's table gone:\n%s", got)
	}
}
