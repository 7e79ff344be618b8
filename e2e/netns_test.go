package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The kernel-mode topology: the box's namespace reaches the "internet"
// (the server's namespace) through a veth pair; the server has no route
// back to the clients' 192.168.32.0/24, so a reply reaches a client only
// if the box masqueraded its packet behind the uplink's address.
const (
	uplinkDev  = "up0" // the box's side of the veth: [network] uplink
	uplinkAddr = "10.99.0.1"
	serverAddr = "10.99.0.2"
	httpPort   = 80   // replies with the remote address it saw
	mssPort    = 9000 // replies with the TCP_MAXSEG of the accepted connection
	udpPort    = 9999 // records every datagram; replies with all seen so far
)

var nsSeq atomic.Int32

// requireRootEnv, set to 1 (CI, `make e2e-kernel`), makes a missing
// privilege or program a failure instead of a skip, so that the kernel
// tests cannot pass by not running.
const requireRootEnv = "ISPBOX_REQUIRE_ROOT"

// needNetAdmin skips t unless it runs as root with iproute2 and nftables
// (CI installs both: apt-get install iproute2 nftables).
func needNetAdmin(t testing.TB) {
	t.Helper()
	testutil.NeedRoot(t, "kernel network mode (network namespaces, TUN, nftables)", "ip", "nft")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no TUN device: %v", err)
	}
}

// netTopo is the two namespaces a test made: box and server.
type netTopo struct {
	box, server string
	serverNS    netns.NsHandle
}

// newNetTopo makes the namespaces, each with loopback up, and the veth
// pair: up0 10.99.0.1/24 in box (default route via the server), eth0
// 10.99.0.2/24 in server. Everything is removed when t ends, whatever
// happened (deleting a namespace deletes its veth end, and so the pair).
func newNetTopo(t testing.TB) *netTopo {
	t.Helper()
	sweepNetns(t)
	id := fmt.Sprintf("%d-%d", os.Getpid(), nsSeq.Add(1))
	tp := &netTopo{box: "ispbox-e2e-box-" + id, server: "ispbox-e2e-srv-" + id}
	for _, n := range []string{tp.box, tp.server} {
		testutil.Run(t, "ip", "netns", "add", n)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", n).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", n, err, out)
			}
		})
	}
	testutil.Uplink(t, tp.box, tp.server, uplinkDev, uplinkAddr, serverAddr)
	var err error
	if tp.serverNS, err = netns.GetFromName(tp.server); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.serverNS.Close() })
	return tp
}

// sweepNetns deletes the namespaces of earlier runs whose test process is
// gone without its cleanup (killed by go test's -timeout, say), so that
// they do not pile up on a CI machine.
func sweepNetns(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(l), " ")
		rest, ok := strings.CutPrefix(name, "ispbox-e2e-")
		if !ok {
			continue
		}
		f := strings.Split(rest, "-") // box|srv, pid, seq
		if len(f) != 3 {
			continue
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + f[1]); err == nil {
			continue // its test still runs
		}
		if err := exec.Command("ip", "netns", "del", name).Run(); err == nil {
			t.Logf("removed namespace %s of an earlier run", name)
		}
	}
}

// inNS runs fn on a fresh OS thread switched into ns. The goroutine ends
// with the thread still locked, so the runtime throws the thread away and
// no other goroutine ever runs in a namespace it did not ask for. Sockets
// made in fn stay in ns whichever thread uses them later.
func inNS(ns netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// datagram is what the UDP server received.
type datagram struct {
	from    netip.AddrPort
	payload string
}

// internetServer is the "internet" side: an HTTP server, an MSS reporter
// and a UDP recorder on serverAddr in the server namespace.
type internetServer struct {
	mu        sync.Mutex
	datagrams []datagram
}

// serve starts the servers in the server namespace until t ends.
func (tp *netTopo) serve(t testing.TB) *internetServer {
	t.Helper()
	s := &internetServer{}
	var (
		hl, ml net.Listener
		uc     net.PacketConn
	)
	err := inNS(tp.serverNS, func() (err error) {
		if hl, err = net.Listen("tcp", net.JoinHostPort(serverAddr, strconv.Itoa(httpPort))); err != nil {
			return err
		}
		if ml, err = net.Listen("tcp", net.JoinHostPort(serverAddr, strconv.Itoa(mssPort))); err != nil {
			return err
		}
		uc, err = net.ListenPacket("udp4", net.JoinHostPort(serverAddr, strconv.Itoa(udpPort)))
		return err
	})
	if err != nil {
		t.Fatalf("servers in %s: %v", tp.server, err)
	}
	var wg sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RemoteAddr)
	})}
	wg.Add(3)
	go func() { defer wg.Done(); srv.Serve(hl) }()
	go func() {
		defer wg.Done()
		for {
			c, err := ml.Accept()
			if err != nil {
				return
			}
			mss := -1
			if raw, err := c.(*net.TCPConn).SyscallConn(); err == nil {
				raw.Control(func(fd uintptr) { mss, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) })
			}
			fmt.Fprintf(c, "%s %d", c.RemoteAddr(), mss)
			c.Close()
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			ap := from.(*net.UDPAddr).AddrPort()
			s.mu.Lock()
			s.datagrams = append(s.datagrams, datagram{from: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), payload: string(buf[:n])})
			reply := s.describeLocked()
			s.mu.Unlock()
			uc.WriteTo([]byte(reply), from)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		ml.Close()
		uc.Close()
		wg.Wait()
	})
	return s
}

// describe lists the datagrams received so far: "from payload" by line.
func (s *internetServer) describe() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.describeLocked()
}

func (s *internetServer) describeLocked() string {
	var b strings.Builder
	for _, d := range s.datagrams {
		fmt.Fprintf(&b, "%s %s\n", d.from.Addr(), d.payload)
	}
	return b.String()
}

// udpPacket builds an IPv4/UDP packet with correct checksums, as a client
// with a raw socket would send it (source address whatever it likes).
func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	const ihl = 20
	p := make([]byte, ihl+8+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0x1234) // identification
	p[8] = 64                                 // TTL
	p[9] = unix.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:ihl], 0))
	u := p[ihl:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	// RFC 768: the checksum covers a pseudo-header of the addresses, the
	// protocol and the UDP length; 0 is sent as all ones.
	pseudo := append(append([]byte(nil), p[12:20]...), 0, unix.IPPROTO_UDP, byte(len(u)>>8), byte(len(u)))
	c := ^checksum.Checksum(append(pseudo, u...), 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return p
}
