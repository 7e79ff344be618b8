package pbx

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/testutil"
)

// sendSpoofed sends payload over UDP from src to dst through a raw socket
// (IP_HDRINCL): the packet the box gets says it came from src.
func sendSpoofed(t *testing.T, src, dst netip.AddrPort, payload []byte) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer syscall.Close(fd)
	pkt := make([]byte, 28+len(payload))
	pkt[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8] = 64 // TTL
	pkt[9] = syscall.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pkt[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(pkt[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(pkt[20:], src.Port())
	binary.BigEndian.PutUint16(pkt[22:], dst.Port())
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	// UDP checksum 0: none (RFC 768), allowed over IPv4
	copy(pkt[28:], payload)
	if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: d4}); err != nil {
		t.Fatalf("sendto: %v", err)
	}
}

// Wrong passwords sent with the ATA's forged source address never get it
// banned: the nonce they carry was sent elsewhere, so they prove nothing
// about the source and count for nothing. (Ten such REGISTERs used to ban
// the ATA's address for 300 s.)
func TestSpoofedFailuresBanNobody(t *testing.T) {
	testutil.NeedRoot(t, "spoofing a source address (raw socket)")
	cfg := testConfig("")
	cfg.General.MaxAuthFailures = 3
	box := startBox(t, cfg, nil)
	ata := registeredUA(t, box.Addr(), clientLine, "3600")
	atk := newRawUAAt(t, box.Addr(), "127.0.7.1")
	r := atk.register(clientLine, 1, "", "", "")
	if r == nil || r.StatusCode != 401 {
		t.Fatalf("attacker's challenge: %v", r)
	}
	a := authz(r, clientLine, "wrong", "REGISTER", "sip:"+box.Addr().String())
	ataAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(ata.port()))
	for i := range 20 {
		src := ataAddr
		if i%2 == 1 {
			src = netip.AddrPortFrom(ataAddr.Addr(), uint16(40000+i)) // the ATA's address, another port
		}
		aor := "<sip:" + clientLine + "@" + box.Addr().String() + ">"
		msg := wire(sipReq{method: sip.REGISTER, uri: "sip:" + box.Addr().String(), via: src.String(), rport: true,
			from: fmt.Sprintf("%s;tag=spoof%d", aor, i+1), to: aor, callID: fmt.Sprintf("spoof-%d@127.0.0.1", i+1), cseq: i + 1,
			hdrs: []string{"Contact: <sip:" + clientLine + "@" + src.String() + ">", "User-Agent: Linksys/PAP2T-5.1.6(LS)",
				"Authorization: " + a}}.String(), "")
		sendSpoofed(t, src, box.Addr(), msg)
	}
	// the answers to the forged requests went to the ATA: proof they arrived
	if n, _ := ata.drain(time.Second); n < 5 {
		t.Fatalf("the ATA got %d answers to 10 requests forged with its address:port", n)
	}
	if n := box.EdgeStats().AuthFailures; n != 0 {
		t.Errorf("%d failures counted for forged requests", n)
	}
	if len(box.Bans()) != 0 {
		t.Errorf("bans after forged requests: %v", box.Bans())
	}
	if r := ata.registerAuth(clientLine, secret, "3600"); r.StatusCode != 200 {
		t.Errorf("ATA REGISTER after the forgeries: %d", r.StatusCode)
	}
	other := newRawUA(t, box.Addr()) // the ATA after a reboot: same address, new port
	if r := other.registerAuth(clientLine, secret, "3600"); r.StatusCode != 200 {
		t.Errorf("REGISTER from the ATA's address, new port: %d", r.StatusCode)
	}
	box.ev.mu.Lock()
	defer box.ev.mu.Unlock()
	for _, e := range box.ev.evs {
		if b, ok := e.(bus.SourceBanned); ok {
			t.Errorf("banned %v", b.Addr)
		}
	}
}
