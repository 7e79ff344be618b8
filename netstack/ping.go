package netstack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// pingTimeout is how long an echo to the world may take; a client's ping
// gives up before that anyway.
const pingTimeout = 5 * time.Second

// ICMPPath is how echo requests from clients reach the world in userspace
// mode.
type ICMPPath string

const (
	// ICMPPingSocket: unprivileged ICMP sockets (SOCK_DGRAM, IPPROTO_ICMP),
	// allowed to the groups in net.ipv4.ping_group_range.
	ICMPPingSocket ICMPPath = "ping socket"
	// ICMPRaw: a raw ICMP socket, which needs CAP_NET_RAW; the fallback for
	// root on a kernel whose ping_group_range is the default "1 0".
	ICMPRaw ICMPPath = "raw socket"
	// ICMPNone: neither; clients' echoes are answered with Destination
	// Unreachable, communication administratively prohibited.
	ICMPNone ICMPPath = "none"
	// ICMPKernel: kernel mode routes ICMP like everything else.
	ICMPKernel ICMPPath = "kernel"
)

// network is the x/net/icmp network name of a path.
func (p ICMPPath) network() string {
	if p == ICMPRaw {
		return "ip4:icmp"
	}
	return "udp4"
}

// probeICMP finds the path this process may use: a ping socket where the
// sysctl allows it (no privilege kept in use), else a raw socket.
func probeICMP() ICMPPath {
	for _, p := range []ICMPPath{ICMPPingSocket, ICMPRaw} {
		if c, err := icmp.ListenPacket(p.network(), "0.0.0.0"); err == nil {
			c.Close()
			return p
		}
	}
	return ICMPNone
}

// icmpHint is logged once at start when no path works.
func icmpHint() string {
	return fmt.Sprintf("ICMP echo to the world is not possible: this process (gid %d) is outside "+
		"net.ipv4.ping_group_range and lacks CAP_NET_RAW; set `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` "+
		"(or a range holding gid %d), or grant cap_net_raw; until then clients' pings are answered "+
		"with ICMP unreachable (administratively prohibited)", os.Getegid(), os.Getegid())
}

// echo forwards a client's ICMP echo request (pkt is the whole IP packet,
// ihl its header length) to dst through the path found at start. A ping
// socket's kernel replaces the identifier with the socket's; a raw socket
// sends one of ours, so that replies to other programs' pings on the host
// are not taken; either way the reply is built back with the client's.
func (u *userspace) echo(s *Session, dst netip.Addr, pkt []byte, ihl int) {
	msg := pkt[ihl:]
	if len(msg) < header.ICMPv4MinimumSize || header.ICMPv4(msg).Code() != 0 {
		s.drop(ReasonMalformed)
		return
	}
	if u.icmp == ICMPNone {
		s.drop(ReasonPingDenied)
		u.prohibited(s, pkt, ihl)
		return
	}
	select {
	case u.pingSem <- struct{}{}:
	default:
		s.drop(ReasonNoRoute) // too many in flight: as if lost
		return
	}
	req := append([]byte(nil), msg...)
	quote := append([]byte(nil), pkt[:min(len(pkt), ihl+8)]...)
	if !u.spawn(func() {
		defer func() { <-u.pingSem }()
		if denied := u.pingOnce(s, dst, req); denied {
			s.drop(ReasonPingDenied)
			u.prohibited(s, quote, ihl)
		}
	}) {
		<-u.pingSem
	}
}

// prohibited answers a client's datagram with Destination Unreachable,
// code 13 "communication administratively prohibited" (RFC 1812 §5.2.7.1),
// from the gateway, quoting the IP header and 8 data bytes (RFC 792), so
// that the client's ping fails at once instead of timing out.
func (u *userspace) prohibited(s *Session, pkt []byte, ihl int) {
	quote := pkt[:min(len(pkt), ihl+8)]
	b, m := icmpMessage(u.gw, s.remote, header.ICMPv4DstUnreachable, len(quote))
	m.SetCode(header.ICMPv4AdminProhibited)
	copy(m.Payload(), quote)
	m.SetChecksum(^checksum.Checksum(m, 0))
	s.output(b)
}

// rawIdent numbers the echoes sent on raw sockets.
var rawIdent atomic.Uint32

// pingOnce sends one echo and relays its reply; it reports whether the
// host refused the socket (the sysctl or the capability changed since start).
func (u *userspace) pingOnce(s *Session, dst netip.Addr, req []byte) (denied bool) {
	c, err := icmp.ListenPacket(u.icmp.network(), "0.0.0.0")
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, os.ErrPermission) {
			return true
		}
		s.drop(ReasonNoRoute)
		return false
	}
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-u.ctx.Done():
			c.Close()
		case <-stop:
		}
	}()
	_ = c.SetDeadline(time.Now().Add(pingTimeout))
	id := binary.BigEndian.Uint16(req[4:6])
	seq := binary.BigEndian.Uint16(req[6:8])
	var to net.Addr = &net.UDPAddr{IP: dst.AsSlice()}
	wantID := -1 // a ping socket's kernel matches the identifier itself
	if u.icmp == ICMPRaw {
		to = &net.IPAddr{IP: dst.AsSlice()}
		ours := uint16(rawIdent.Add(1))
		wantID = int(ours)
		m := header.ICMPv4(req)
		m.SetIdent(ours)
		m.SetChecksum(0)
		m.SetChecksum(^checksum.Checksum(m, 0))
	}
	if _, err := c.WriteTo(req, to); err != nil {
		u.st.log.Debug("ping send failed", "dst", dst, "err", err)
		return false
	}
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return false // timeout: the client sees a lost echo
		}
		r := buf[:n]
		if !sameIP(from, dst) || n < header.ICMPv4MinimumSize || header.ICMPv4(r).Type() != header.ICMPv4EchoReply ||
			binary.BigEndian.Uint16(r[6:8]) != seq ||
			(wantID >= 0 && binary.BigEndian.Uint16(r[4:6]) != uint16(wantID)) {
			continue
		}
		s.output(icmpPacket(dst, s.remote, header.ICMPv4EchoReply, id, seq, r[header.ICMPv4MinimumSize:]))
		return false
	}
}

func sameIP(a net.Addr, ip netip.Addr) bool {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP.Equal(ip.AsSlice())
	case *net.IPAddr:
		return a.IP.Equal(ip.AsSlice())
	}
	return false
}

// icmpPacket builds an IPv4 packet carrying one ICMP echo message.
func icmpPacket(src, dst netip.Addr, typ header.ICMPv4Type, id, seq uint16, data []byte) []byte {
	b, m := icmpMessage(src, dst, typ, len(data))
	m.SetIdent(id)
	m.SetSequence(seq)
	copy(m.Payload(), data)
	m.SetChecksum(^checksum.Checksum(m, 0))
	return b
}

// icmpMessage builds an IPv4 packet with an ICMP message of type typ and n
// bytes after its 8-byte header; the caller fills the rest of the message
// and then its checksum.
func icmpMessage(src, dst netip.Addr, typ header.ICMPv4Type, n int) ([]byte, header.ICMPv4) {
	b := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+n)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	m := header.ICMPv4(b[header.IPv4MinimumSize:])
	m.SetType(typ)
	return b, m
}
