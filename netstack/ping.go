package netstack

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
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

// echo forwards a client's ICMP echo request to dst through an unprivileged
// ICMP socket (SOCK_DGRAM, IPPROTO_ICMP: allowed to the groups in
// net.ipv4.ping_group_range, no CAP_NET_RAW). The kernel replaces the
// identifier with the socket's; the reply is built back with the client's.
// Where the host does not allow such sockets the echo is dropped and counted.
func (u *userspace) echo(s *Session, dst netip.Addr, msg []byte) {
	if len(msg) < header.ICMPv4MinimumSize || header.ICMPv4(msg).Code() != 0 {
		s.drop(ReasonMalformed)
		return
	}
	select {
	case u.pingSem <- struct{}{}:
	default:
		s.drop(ReasonNoRoute) // too many in flight: as if lost
		return
	}
	req := append([]byte(nil), msg...)
	if !u.spawn(func() {
		defer func() { <-u.pingSem }()
		u.pingOnce(s, dst, req)
	}) {
		<-u.pingSem
	}
}

func (u *userspace) pingOnce(s *Session, dst netip.Addr, req []byte) {
	c, err := icmp.ListenPacket("udp4", "0.0.0.0")
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, os.ErrPermission) {
			s.drop(ReasonPingDenied)
		} else {
			s.drop(ReasonNoRoute)
		}
		return
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
	if _, err := c.WriteTo(req, &net.UDPAddr{IP: dst.AsSlice()}); err != nil {
		u.st.log.Debug("ping send failed", "dst", dst, "err", err)
		return
	}
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return // timeout: the client sees a lost echo
		}
		r := buf[:n]
		if ua, ok := from.(*net.UDPAddr); !ok || !ua.IP.Equal(dst.AsSlice()) ||
			n < header.ICMPv4MinimumSize || header.ICMPv4(r).Type() != header.ICMPv4EchoReply ||
			binary.BigEndian.Uint16(r[6:8]) != seq {
			continue
		}
		s.output(icmpPacket(dst, s.remote, header.ICMPv4EchoReply, id, seq, r[header.ICMPv4MinimumSize:]))
		return
	}
}

// icmpPacket builds an IPv4 packet carrying one ICMP echo message.
func icmpPacket(src, dst netip.Addr, typ header.ICMPv4Type, id, seq uint16, data []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(data))
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
	m.SetIdent(id)
	m.SetSequence(seq)
	copy(m.Payload(), data)
	m.SetChecksum(0)
	m.SetChecksum(^checksum.Checksum(m, 0))
	return b
}
