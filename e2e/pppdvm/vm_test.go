package pppdvm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/isp-box/isp-box/e2e/pppdvm"
	"github.com/isp-box/isp-box/e2e/pppdvm/pppdvmtest"
)

// TestFirstFrameIsLCPConfReq boots the VM in direct mode with nobody
// answering: pppd's first frame must be the LCP Configure-Request pppd 2.4.9
// sends (ACCM 0, Magic-Number, PFC,
// ACFC), its retries must follow every ~3 s, and when pppd gives up
// (lcp-max-configure 2) the guest must report a failed call and Wait must
// return it with the console's tail.
func TestFirstFrameIsLCPConfReq(t *testing.T) {
	pppdvmtest.NeedVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm, err := pppdvm.Start(ctx, pppdvm.Options{
		Extra: []string{"lcp-max-configure 2"},
		Log:   pppdvmtest.TestLog(t, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()

	br := bufio.NewReader(vm.Serial())
	raw, err := br.Peek(6)
	if err != nil {
		t.Fatalf("reading the serial line: %v", err)
	}
	boot := time.Since(vm.Started())
	// 7e flag, ff address, 7d 23 = escaped 03 control, c0 21 = LCP.
	if want := []byte{0x7e, 0xff, 0x7d, 0x23, 0xc0, 0x21}; !bytes.Equal(raw, want) {
		t.Fatalf("first bytes % x, want % x", raw, want)
	}
	t.Logf("first LCP frame %v after Start", boot.Round(10*time.Millisecond))

	frames := 0
	var magic []byte
	for frames < 2 {
		frame, err := readFrame(br)
		if err != nil {
			t.Fatalf("frame %d: %v", frames+1, err)
		}
		frames++
		// ff 03 c0 21, then LCP: code 1 (Configure-Request), id, length.
		if len(frame) < 8 || !bytes.Equal(frame[:5], []byte{0xff, 0x03, 0xc0, 0x21, 0x01}) {
			t.Fatalf("frame %d is not an LCP Configure-Request: % x", frames, frame)
		}
		lcp := frame[4:]
		if n := int(binary.BigEndian.Uint16(lcp[2:4])); n != len(lcp) {
			t.Fatalf("LCP length %d, frame carries %d", n, len(lcp))
		}
		opts := map[byte][]byte{}
		for o := lcp[4:]; len(o) > 0; {
			if len(o) < 2 || int(o[1]) < 2 || int(o[1]) > len(o) {
				t.Fatalf("bad option list % x", lcp[4:])
			}
			opts[o[0]] = o[2:o[1]]
			o = o[o[1]:]
		}
		// RFC 1661 §6: 2 ACCM (RFC 1662 §7.1), 5 Magic-Number, 7 PFC, 8 ACFC.
		if got := opts[2]; !bytes.Equal(got, []byte{0, 0, 0, 0}) {
			t.Errorf("ACCM option % x, want 00 00 00 00", got)
		}
		if len(opts[5]) != 4 {
			t.Errorf("Magic-Number option % x, want 4 bytes", opts[5])
		}
		if magic != nil && !bytes.Equal(magic, opts[5]) {
			t.Errorf("retry changed the magic number: % x then % x", magic, opts[5])
		}
		magic = opts[5]
		for _, o := range []byte{7, 8} {
			if v, ok := opts[o]; !ok || len(v) != 0 {
				t.Errorf("option %d: %v %x, want present and empty", o, ok, v)
			}
		}
		if _, ok := opts[1]; ok {
			t.Errorf("MRU sent (%x): pppd leaves the default 1500 out", opts[1])
		}
	}
	// Keep draining so the guest's writes never block while pppd gives up.
	go io.Copy(io.Discard, br)

	res, err := vm.Wait()
	if err == nil || res.OK {
		t.Fatalf("Wait: %v, %+v; want a failed call", err, res)
	}
	// pppd exits 16 (EXIT_HANGUP) here: "Modem hangup" follows the LCP
	// timeout on a line that never carried a peer; any non-zero will do.
	if res.Reason != "pppd-exited" || res.PPPDExit <= 0 {
		t.Errorf("result %q: want reason=pppd-exited and a non-zero pppd_exit", res.Line())
	}
	if !strings.Contains(res.Console, "LCP: timeout sending Config-Requests") {
		t.Errorf("console tail lacks pppd's LCP timeout:\n%s", res.Console)
	}
	t.Logf("whole run %v (guest uptime %v)", res.Elapsed.Round(10*time.Millisecond), res.GuestTime)
}

// readFrame reads one async-HDLC frame (RFC 1662 §4): skips flags, undoes
// the 7d escapes, checks the FCS-16 and returns the frame without it.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var f []byte
	esc := false
	for {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch {
		case c == 0x7e:
			if len(f) == 0 {
				continue // leading or shared flag
			}
			if len(f) < 4 {
				return nil, errors.New("runt frame")
			}
			if fcs16(f) != 0xf0b8 { // RFC 1662 §C.2: good final FCS
				return nil, errors.New("bad FCS")
			}
			return f[:len(f)-2], nil
		case c == 0x7d:
			esc = true
		case esc:
			f = append(f, c^0x20)
			esc = false
		default:
			f = append(f, c)
		}
	}
}

// fcs16 is RFC 1662 §C.2's FCS, bit by bit (the project's ppp package has
// the table-driven one; this test must not depend on it).
func fcs16(b []byte) uint16 {
	fcs := uint16(0xffff)
	for _, c := range b {
		fcs ^= uint16(c)
		for range 8 {
			if fcs&1 != 0 {
				fcs = fcs>>1 ^ 0x8408
			} else {
				fcs >>= 1
			}
		}
	}
	return fcs
}
