// Package e2e runs the PPP server against a real pppd 2.4.9 (Debian's) in
// a small qemu VM whose second serial port is a unix socket the test serves
// as a direct line. Build the VM first: `bash ppp/e2e/mkvm.sh DIR`, then run
// with ISPBOX_PPPD_VM=DIR/vm (make e2e-pppd does both).
package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/ppp/ppptest"
)

func vmDir(t *testing.T) string {
	dir := os.Getenv("ISPBOX_PPPD_VM")
	if dir == "" {
		t.Skip("ISPBOX_PPPD_VM not set: build the VM with ppp/e2e/mkvm.sh (make e2e-pppd)")
	}
	for _, f := range []string{"vmlinuz", "initrd"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("VM not built: %v", err)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 missing (apt-get install qemu-system-x86)")
	}
	return dir
}

// pinger answers ICMP echo requests to the gateway, as the box's network
// side does, so that pppd's ping of 192.168.32.1 gets replies.
func pinger(ctx context.Context, link *ppptest.Link) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-link.Sent:
			if len(p) < 28 || p[9] != 1 || p[20] != 8 || netip.AddrFrom4([4]byte(p[16:20])) != link.Local() {
				continue
			}
			r := bytes.Clone(p)
			copy(r[12:16], p[16:20])
			copy(r[16:20], p[12:16])
			r[20] = 0 // echo reply
			r[10], r[11] = 0, 0
			binary.BigEndian.PutUint16(r[10:], csum(r[:20]))
			ihl := int(r[0]&0xf) * 4
			r[ihl+2], r[ihl+3] = 0, 0
			binary.BigEndian.PutUint16(r[ihl+2:], csum(r[ihl:]))
			link.Deliver(r)
		}
	}
}

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		v := uint32(b[i]) << 8
		if i+1 < len(b) {
			v |= uint32(b[i+1])
		}
		s += v
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func TestRealPppd(t *testing.T) {
	dir := vmDir(t)
	for _, proto := range []ppp.AuthProto{ppp.AuthPAP, ppp.AuthCHAP, ppp.AuthMSCHAP, ppp.AuthMSCHAPv2} {
		t.Run(string(proto), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			tmp := t.TempDir()
			sock := filepath.Join(tmp, "ttyS1.sock")
			console := filepath.Join(tmp, "console.log")
			start := time.Now()
			qemu := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "192",
				"-display", "none", "-no-reboot", "-monitor", "none",
				"-kernel", filepath.Join(dir, "vmlinuz"), "-initrd", filepath.Join(dir, "initrd"),
				"-append", "console=ttyS0 quiet panic=-1 auth="+string(proto),
				"-serial", "file:"+console,
				"-chardev", "socket,id=s1,path="+sock+",server=on,wait=on", "-serial", "chardev:s1")
			var qout bytes.Buffer
			qemu.Stdout, qemu.Stderr = &qout, &qout
			if err := qemu.Start(); err != nil {
				t.Fatal(err)
			}
			defer qemu.Process.Kill()
			var conn net.Conn
			for conn == nil {
				c, err := net.Dial("unix", sock)
				if err == nil {
					conn = c
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("qemu socket never appeared: %s", qout.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			cfg := ppp.DefaultConfig()
			cfg.RequireAuth = true
			cfg.Auth = []ppp.AuthProto{proto}
			cfg.DNS = []netip.Addr{netip.MustParseAddr("8.8.8.8")}
			cfg.AsyncMap = 0
			cfg.EchoInterval, cfg.EchoFailure = 30*time.Second, 4
			netw := ppptest.NewNetwork("192.168.32.1", "192.168.32.105")
			go func() {
				if l, err := netw.Attached(ctx); err == nil {
					pinger(ctx, l)
				}
			}()
			fc := &firstOctet{Conn: conn}
			rec, err := ppp.Serve(ctx, fc, cfg, ppp.Options{Users: []ppp.User{{Name: "dial", Server: "*", Secret: "dial"}},
				Network: netw, Line: "ttyS1", Log: testLog(t)})
			if err != nil {
				t.Fatal(err)
			}
			qemu.Wait()
			log, _ := os.ReadFile(console)
			out := string(log)
			if !fc.at.IsZero() && !rec.Up.IsZero() {
				t.Logf("qemu start → pppd's first octet %s; first octet → IPCP up %s; whole run %s",
					fc.at.Sub(start).Round(time.Millisecond), rec.Up.Sub(fc.at).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			}
			if testing.Verbose() {
				t.Logf("pppd's log:\n%s", tail(out, 40))
			}
			for _, want := range []string{
				"E2E IPUP local=192.168.32.105 remote=192.168.32.1 dns1=8.8.8.8 dns2=8.8.8.8",
				"E2E PING rc=0",
				"3 packets transmitted, 3 packets received",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("console lacks %q:\n%s", want, tail(out, 60))
				}
			}
			if rec.Cause != ppp.CausePeer || rec.User != "dial" || rec.Auth != proto || rec.PktsIn < 3 || rec.PktsOut < 3 {
				t.Errorf("record %+v", rec)
			}
		})
	}
}

// firstOctet notes when the first octet arrives from pppd.
type firstOctet struct {
	net.Conn
	at time.Time
}

func (f *firstOctet) Read(b []byte) (int, error) {
	n, err := f.Conn.Read(b)
	if n > 0 && f.at.IsZero() {
		f.at = time.Now()
	}
	return n, err
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func testLog(t *testing.T) *slogLogger { return newTestLog(t) }
