package pppdvmtest

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// TestEchoReply checks the test network's ICMP answer: an echo request
// from 192.168.32.105 to 192.168.32.1 as busybox ping sends it, and its
// reply (TTL 64). The real check is the VM's ping accepting the replies.
func TestEchoReply(t *testing.T) {
	gw := netip.MustParseAddr("192.168.32.1")
	// IPv4, 84 bytes, ICMP echo id 0x1234 seq 1, 56 bytes of payload.
	payload := bytes.Repeat([]byte{0xa5}, 56)
	// Checksums computed independently (Python, RFC 1071).
	req := append(unhex("45000054 0000 4000 4001 78ee c0a82069 c0a82001 0800 c7ac 1234 0001"), payload...)
	got, err := echoReply(req, gw)
	if err != nil {
		t.Fatal(err)
	}
	want := append(unhex("45000054 0000 4000 4001 78ee c0a82001 c0a82069 0000 cfac 1234 0001"), payload...)
	if !bytes.Equal(got, want) {
		t.Errorf("reply\n got % x\nwant % x", got, want)
	}
	for name, p := range map[string][]byte{
		"to another host": func() []byte { p := bytes.Clone(req); p[19] = 2; fill(p[:20], 10); return p }(),
		"echo reply":      func() []byte { p := bytes.Clone(req); p[20] = 0; fill(p[20:], 2); return p }(),
		"bad checksum":    func() []byte { p := bytes.Clone(req); p[30] ^= 1; return p }(),
		"truncated":       req[:30],
		"udp":             func() []byte { p := bytes.Clone(req); p[9] = 17; fill(p[:20], 10); return p }(),
	} {
		if _, err := echoReply(p, gw); err == nil {
			t.Errorf("%s: answered", name)
		}
	}
}

// fill computes the checksum at offset off of b (zeroing it first).
func fill(b []byte, off int) {
	b[off], b[off+1] = 0, 0
	c := ^checksum.Checksum(b, 0)
	b[off], b[off+1] = byte(c>>8), byte(c)
}
