package e2e

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/sim/hayes/hayestest"
	"github.com/isp-box/isp-box/modem/telnet"
)

// TestBBSThroughHardwareLine: the caller's modem dials a BBS number through
// the virtual ATA and the PBX; the dial plan says Telnet(BBS) before the
// Dial() that rings the box's hardware modem line; when the line answers,
// the box reads the service of that SIP call and splices the modem's data
// to the Telnet server the test runs on loopback: text both ways, and all
// 256 byte values unchanged.
func TestBBSThroughHardwareLine(t *testing.T) {
	if testing.Short() {
		t.Skip("dials through the whole chain")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		c, err := telnet.Server(nc)
		if err != nil {
			return
		}
		c.Write([]byte("Welcome to the BBS\r\nName? "))
		nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		var all []byte
		buf := make([]byte, 512)
		for !bytes.Contains(all, []byte("\xff\xfe\xfd")) {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			c.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- all
	}()
	cfg := pap2t(t, func(src string) string {
		return strings.Replace(src, "exten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)",
			"exten => 5552323,1,Telnet("+ln.Addr().String()+")\nsame => n,Dial(SIP/pap2t-ispmodem, 20)\nexten => _X!,1,Dial(SIP/pap2t-ispmodem, 20)", 1)
	})
	w := startWorld(t, cfg, worldOpts{})
	dte := hayestest.Open(t, w.Clients["pap2t-client"].Path())
	dte.Timeout = 60 * time.Second
	dte.Send("ATE0\r")
	dte.Expect("OK")
	dte.Send("ATDT5552323\r")
	dte.Expect("CONNECT")
	dte.Expect("Welcome to the BBS\r\nName? ")
	dte.Send("sysop\r")
	dte.Expect("sysop\r")
	all := make([]byte, 0, 256)
	for i := 0; i < 256; i++ {
		all = append(all, byte(i))
	}
	// The BBS stops at FF FE FD; the last bytes sent are those.
	all = append(all, 0xff, 0xfe, 0xfd)
	dte.Send(string(all))
	echo := dte.Expect("\xff\xfe\xfd")
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
