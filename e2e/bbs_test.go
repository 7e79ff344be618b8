package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/isp-box/isp-box/internal/sim/hayes/hayestest"
	"github.com/isp-box/isp-box/internal/testutil"
	"github.com/isp-box/isp-box/modem/telnet/telnettest"
)

// bbsEnd is the byte sequence after which the test BBS stops echoing.
var bbsEnd = []byte{0xff, 0xfe, 0xfd}

// bbsInNetns starts a Telnet BBS in a network namespace of its own, as a
// BBS on another host: the test's (host) namespace reaches it over a veth
// pair, 10.98.S.1 here and 10.98.S.2:23 there. The BBS greets, echoes
// what it reads until bbsEnd, and sends all it read on the channel.
// Needs root and iproute2 (skipped without, fails under
// ISPBOX_REQUIRE_ROOT=1); everything is removed when t ends.
func bbsInNetns(t *testing.T) (addr string, got <-chan []byte) {
	t.Helper()
	testutil.NeedRoot(t, "the BBS in a network namespace", "ip")
	sweepNetns(t)
	seq := nsSeq.Add(1)
	name := fmt.Sprintf("ispbox-e2e-bbs-%d-%d", os.Getpid(), seq)
	testutil.Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		// Deleting the namespace deletes its veth end, and so the pair.
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	host := fmt.Sprintf("bbs%d-%d", os.Getpid()%100000, seq)
	subnet := fmt.Sprintf("10.98.%d.", 1+int(seq)%250)
	testutil.Run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	testutil.Run(t, "ip", "addr", "add", subnet+"1/24", "dev", host)
	testutil.Run(t, "ip", "link", "set", host, "up")
	testutil.Run(t, "ip", "-n", name, "addr", "add", subnet+"2/24", "dev", "eth0")
	testutil.Run(t, "ip", "-n", name, "link", "set", "eth0", "up")
	testutil.Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var ln net.Listener
	if err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", subnet+"2:23")
		return err
	}); err != nil {
		t.Fatalf("BBS listener in %s: %v", name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), telnettest.BBS{
		Greeting: "Welcome to the BBS\r\nName? ",
		Echo:     true,
		Until:    telnettest.Contains(bbsEnd),
	}.Serve(ln)
}

// bbsCall is the caller's side: ATDT5552323, CONNECT, the greeting, a name
// typed and echoed, all 256 byte values there and back unchanged through
// the Telnet bridge, and the BBS got them unchanged too.
func bbsCall(t *testing.T, dte *hayestest.DTE, got <-chan []byte) {
	t.Helper()
	dte.Timeout = 60 * time.Second
	dte.Send("ATE0\r")
	dte.Expect("OK")
	dte.Send("ATDT5552323\r")
	dte.Expect("CONNECT")
	dte.Expect("Welcome to the BBS\r\nName? ")
	dte.Send("sysop\r")
	dte.Expect("sysop\r")
	all := make([]byte, 0, 256+len(bbsEnd))
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	// The BBS stops at FF FE FD; the last bytes sent are those.
	all = append(all, bbsEnd...)
	dte.Send(string(all))
	echo := dte.Expect(string(bbsEnd))
	if !strings.HasSuffix(echo, string(all)) {
		t.Errorf("echo from the BBS:\n% x", echo)
	}
	select {
	case b := <-got:
		if !bytes.HasSuffix(b, all) || !bytes.HasPrefix(b, []byte("sysop\r")) {
			t.Errorf("BBS got % x", b)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the BBS got nothing")
	}
}

// bbsPlan puts exten 5552323 → Telnet(addr) before the seed's catch-all
// Dial() of the ISP modem.
func bbsPlan(src, addr string) string {
	return strings.Replace(src, "exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)",
		"exten => 5552323,1,Telnet("+addr+")\nsame => n,Dial(SIP/pap2t-ispmodem, 20)\nexten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)", 1)
}

// TestBBSThroughHardwareLine: the caller's modem dials a BBS number through
// the virtual ATA and the PBX; the dial plan says Telnet(BBS) before the
// Dial() that rings the box's hardware modem line; when the line answers,
// the box reads the service of that SIP call and splices the modem's data
// to the Telnet BBS the test runs in a network namespace: text both ways,
// and all 256 byte values unchanged.
func TestBBSThroughHardwareLine(t *testing.T) {
	if testing.Short() {
		t.Skip("dials through the whole chain")
	}
	addr, got := bbsInNetns(t)
	cfg := pap2t(t, func(src string) string { return bbsPlan(src, addr) })
	w := startWorld(t, cfg, worldOpts{})
	dte := hayestest.Open(t, w.Clients["pap2t-client"].Path())
	bbsCall(t, dte, got)
}

// TestBBSThroughVirtualModem: no modem at all: the old computer's serial
// port (a pty) is the box's virtual-modem line; ATDT5552323 runs through
// the same dial plan, Telnet() before the Dial() picks the BBS in its
// network namespace, the box connects to it before it says CONNECT, and the
// caller talks to the BBS.
func TestBBSThroughVirtualModem(t *testing.T) {
	if testing.Short() {
		t.Skip("dials through the box")
	}
	addr, got := bbsInNetns(t)
	dte, slave := hayestest.OpenPTY(t)
	cfg := pap2t(t, func(src string) string {
		return bbsPlan(src, addr) + `
[line ttyS0]
kind virtual-modem
device ` + slave + `
connect-speed 33600
`
	})
	startWorld(t, cfg, worldOpts{})
	bbsCall(t, dte, got)
}
