// Package vj is Van Jacobson TCP/IP header compression (RFC 1144), as PPP
// negotiates it in IPCP (RFC 1332 §4): protocol 0x002D carries compressed
// TCP/IP, 0x002F an uncompressed packet whose IP protocol field holds the
// connection (slot) number, 0x0021 everything else.
package vj

import (
	"encoding/binary"
	"errors"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// PPP protocol numbers of the three packet types.
const (
	TypeIP           uint16 = 0x0021
	TypeCompressed   uint16 = 0x002D
	TypeUncompressed uint16 = 0x002F
)

// Change-mask bits (RFC 1144 §3.2.2, Appendix A.1).
const (
	newC      = 0x40 // connection number present
	newI      = 0x20 // IP ID delta present (else +1)
	pushBit   = 0x10 // TCP PUSH flag
	newS      = 0x08
	newA      = 0x04
	newW      = 0x02
	newU      = 0x01
	specialI  = newS | newW | newU        // echoed interactive traffic
	specialD  = newS | newA | newW | newU // unidirectional data
	specials  = newS | newA | newW | newU // mask selecting the special cases
	maxHeader = 128                       // IP header ≤ 60 + TCP header ≤ 60
)

// TCP flags and IP fields used.
const (
	tcpFIN   = 0x01
	tcpSYN   = 0x02
	tcpRST   = 0x04
	tcpPSH   = 0x08
	tcpACK   = 0x10
	tcpURG   = 0x20
	protoTCP = 6
)

var (
	errTossing = errors.New("vj: discarding until an uncompressed packet")
	errShort   = errors.New("vj: packet too short")
	errBadSlot = errors.New("vj: connection number out of range")
	errBadPkt  = errors.New("vj: not a TCP/IPv4 packet")
)

type slot struct {
	hdr  [maxHeader]byte
	hlen int // IP + TCP header length saved in hdr
	used uint64
	live bool
}

func (s *slot) ipLen() int { return int(binary.BigEndian.Uint16(s.hdr[2:])) }

// headerLens validates an IPv4 TCP packet and returns its IP and TCP header
// lengths.
func headerLens(p []byte) (ihl, thl int, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return 0, 0, false
	}
	ihl = int(p[0]&0x0f) * 4
	if ihl < 20 || len(p) < ihl+20 {
		return 0, 0, false
	}
	thl = int(p[ihl+12]>>4) * 4
	if thl < 20 || len(p) < ihl+thl || int(binary.BigEndian.Uint16(p[2:])) < ihl+thl {
		return 0, 0, false
	}
	return ihl, thl, true
}

// Compressor compresses packets sent to one peer. Not safe for concurrent use.
type Compressor struct {
	slots       []slot
	compressCID bool // the peer accepts an omitted connection number
	lastXmit    int
	clock       uint64
	// Counters.
	Packets, Compressed, Uncompressed, Searches uint64
}

// NewCompressor returns a compressor for maxSlot+1 connections (the peer's
// Max-Slot-Id). compressCID is the peer's Comp-Slot-Id.
func NewCompressor(maxSlot uint8, compressCID bool) *Compressor {
	return &Compressor{slots: make([]slot, int(maxSlot)+1), compressCID: compressCID, lastXmit: -1}
}

// appendEncode is RFC 1144's ENCODEZ: one octet for 1..255, else 0 then 16
// bits. (ENCODE, its variant for values known to be non-zero, gives the same
// octets for those values, so one function serves every field.)
func appendEncode(b []byte, n uint16) []byte {
	if n == 0 || n >= 256 {
		return append(b, 0, byte(n>>8), byte(n))
	}
	return append(b, byte(n))
}

// Compress appends to dst the packet to send for the IP packet pkt and
// returns its PPP protocol (TypeIP, TypeCompressed or TypeUncompressed).
// pkt is not modified or retained.
func (c *Compressor) Compress(dst, pkt []byte) (uint16, []byte) {
	c.Packets++
	ihl, thl, ok := headerLens(pkt)
	// RFC 1144 §3.2.3: only unfragmented TCP over IPv4 is compressed.
	if !ok || pkt[9] != protoTCP || binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
		return TypeIP, append(dst, pkt...) // not TCP, or a fragment
	}
	if total := int(binary.BigEndian.Uint16(pkt[2:])); total < len(pkt) {
		pkt = pkt[:total]
	}
	th := pkt[ihl:]
	// SYN, FIN and RST start or end a connection and a segment without
	// ACK is unusual: they go as plain IP (RFC 1144 §3.2.3).
	if th[13]&(tcpSYN|tcpFIN|tcpRST|tcpACK) != tcpACK {
		return TypeIP, append(dst, pkt...)
	}
	hlen := ihl + thl

	// Find the connection: same addresses and ports (RFC 1144 §3.2.3).
	c.clock++
	cs, oldest := -1, 0
	for i := range c.slots {
		s := &c.slots[i]
		if s.live && s.hlen >= 24 && equal(s.hdr[12:20], pkt[12:20]) {
			sih := int(s.hdr[0]&0x0f) * 4
			if equal(s.hdr[sih:sih+4], th[:4]) {
				cs = i
				break
			}
		}
		if c.slots[i].used < c.slots[oldest].used {
			oldest = i
		}
	}
	c.Searches++
	if cs < 0 {
		// A new connection takes the least recently used slot and is
		// sent uncompressed to teach the peer its header.
		cs = oldest
		return c.uncompressed(dst, pkt, cs, hlen)
	}
	s := &c.slots[cs]
	s.used = c.clock
	sih := int(s.hdr[0]&0x0f) * 4
	oth := s.hdr[sih:s.hlen]
	// Fields that must not change: version/IHL/TOS, fragment field, TTL and
	// protocol, IP options, TCP data offset, flags other than PSH/URG/ACK,
	// TCP options.
	if s.hlen != hlen || sih != ihl ||
		!equal(s.hdr[0:2], pkt[0:2]) || !equal(s.hdr[6:10], pkt[6:10]) ||
		!equal(s.hdr[20:ihl], pkt[20:ihl]) || oth[12] != th[12] ||
		(oth[13]^th[13])&^(tcpPSH|tcpURG) != 0 ||
		!equal(oth[20:thl], th[20:thl]) {
		return c.uncompressed(dst, pkt, cs, hlen)
	}

	// RFC 1144 §3.2.2, A.2: the fields that change are sent as deltas in
	// the order urgent, window, ack, sequence, IP ID.
	var deltas [16]byte
	d := deltas[:0]
	changes := byte(0)
	if th[13]&tcpURG != 0 {
		d = appendEncode(d, binary.BigEndian.Uint16(th[18:]))
		changes |= newU
	} else if !equal(th[18:20], oth[18:20]) {
		return c.uncompressed(dst, pkt, cs, hlen)
	}
	if dw := binary.BigEndian.Uint16(th[14:]) - binary.BigEndian.Uint16(oth[14:]); dw != 0 {
		d = appendEncode(d, dw)
		changes |= newW
	}
	if da := binary.BigEndian.Uint32(th[8:]) - binary.BigEndian.Uint32(oth[8:]); da != 0 {
		if da > 0xffff {
			return c.uncompressed(dst, pkt, cs, hlen)
		}
		d = appendEncode(d, uint16(da))
		changes |= newA
	}
	ds := binary.BigEndian.Uint32(th[4:]) - binary.BigEndian.Uint32(oth[4:])
	if ds != 0 {
		if ds > 0xffff {
			return c.uncompressed(dst, pkt, cs, hlen)
		}
		d = appendEncode(d, uint16(ds))
		changes |= newS
	}
	olddata := uint32(s.ipLen() - hlen)
	newLen := int(binary.BigEndian.Uint16(pkt[2:]))
	switch changes {
	case 0:
		// Nothing changed: a data packet after a pure ack is sent
		// compressed; anything else may be a retransmission the peer
		// missed, so it goes uncompressed.
		if !(newLen != s.ipLen() && s.ipLen() == hlen) {
			return c.uncompressed(dst, pkt, cs, hlen)
		}
	case specialI, specialD:
		// The real changes look like a special case: send uncompressed.
		return c.uncompressed(dst, pkt, cs, hlen)
	case newS | newA:
		if ds == uint32(binary.BigEndian.Uint32(th[8:])-binary.BigEndian.Uint32(oth[8:])) && ds == olddata {
			changes, d = specialI, d[:0]
		}
	case newS:
		if ds == olddata {
			changes, d = specialD, d[:0]
		}
	}
	if di := binary.BigEndian.Uint16(pkt[4:]) - binary.BigEndian.Uint16(s.hdr[4:]); di != 1 {
		d = appendEncode(d, di)
		changes |= newI
	}
	if th[13]&tcpPSH != 0 {
		changes |= pushBit
	}
	// The slot now holds this header: the next delta is against it.
	copy(s.hdr[:], pkt[:hlen])

	c.Compressed++
	// The connection number may be left out only if the peer allowed it
	// (Comp-Slot-Id 1) and it is the same as in the last packet.
	if !c.compressCID || c.lastXmit != cs {
		c.lastXmit = cs
		dst = append(dst, changes|newC, byte(cs))
	} else {
		dst = append(dst, changes)
	}
	dst = append(dst, th[16], th[17]) // TCP checksum, unchanged
	dst = append(dst, d...)
	return TypeCompressed, append(dst, pkt[hlen:]...)
}

func (c *Compressor) uncompressed(dst, pkt []byte, cs, hlen int) (uint16, []byte) {
	s := &c.slots[cs]
	copy(s.hdr[:], pkt[:hlen])
	s.hlen, s.live, s.used = hlen, true, c.clock
	c.lastXmit = cs
	c.Uncompressed++
	n := len(dst)
	dst = append(dst, pkt...)
	dst[n+9] = byte(cs) // RFC 1144 §3.2.4: the protocol field carries the slot
	return TypeUncompressed, dst
}

func equal(a, b []byte) bool { return string(a) == string(b) }

// Decompressor rebuilds packets received from one peer. Not safe for
// concurrent use.
type Decompressor struct {
	slots    []slot
	lastRecv int
	toss     bool
	// Errors counts packets dropped as malformed or while tossing.
	Errors uint64
}

// NewDecompressor returns a decompressor for maxSlot+1 connections (our
// Max-Slot-Id as the peer acked it).
func NewDecompressor(maxSlot uint8) *Decompressor {
	return &Decompressor{slots: make([]slot, int(maxSlot)+1), toss: true}
}

// Toss discards compressed packets until the next one that names its
// connection; the session calls it when a frame was lost (bad FCS), as
// RFC 1144 §4.2 requires.
func (d *Decompressor) Toss() { d.toss = true }

// Decompress appends to dst the IP packet carried by a frame of protocol
// typ (TypeCompressed or TypeUncompressed).
func (d *Decompressor) Decompress(dst []byte, typ uint16, p []byte) ([]byte, error) {
	out, err := d.decompress(dst, typ, p)
	if err != nil {
		d.Errors++
		if !errors.Is(err, errTossing) {
			d.toss = true
		}
	}
	return out, err
}

func (d *Decompressor) decompress(dst []byte, typ uint16, p []byte) ([]byte, error) {
	switch typ {
	case TypeUncompressed:
		ihl, thl, ok := headerLens(p)
		if !ok {
			return dst, errBadPkt
		}
		cs := int(p[9])
		if cs >= len(d.slots) {
			return dst, fmt.Errorf("%w: %d", errBadSlot, cs)
		}
		hlen := ihl + thl
		n := len(dst)
		dst = append(dst, p...)
		dst[n+9] = protoTCP
		s := &d.slots[cs]
		copy(s.hdr[:], dst[n:n+hlen])
		s.hlen, s.live = hlen, true
		d.lastRecv, d.toss = cs, false
		return dst, nil
	case TypeCompressed:
	default:
		return dst, fmt.Errorf("vj: protocol %#04x", typ)
	}
	if len(p) < 3 {
		return dst, errShort
	}
	changes := p[0]
	p = p[1:]
	if changes&newC != 0 {
		cs := int(p[0])
		p = p[1:]
		if cs >= len(d.slots) || !d.slots[cs].live {
			return dst, fmt.Errorf("%w: %d", errBadSlot, cs)
		}
		d.lastRecv, d.toss = cs, false
	} else if d.toss {
		return dst, errTossing
	}
	s := &d.slots[d.lastRecv]
	if !s.live {
		return dst, errTossing
	}
	if len(p) < 2 {
		return dst, errShort
	}
	var hdr [maxHeader]byte
	copy(hdr[:], s.hdr[:s.hlen])
	hlen := s.hlen
	ihl := int(hdr[0]&0x0f) * 4
	th := hdr[ihl:hlen]
	th[16], th[17] = p[0], p[1]
	p = p[2:]
	if changes&pushBit != 0 {
		th[13] |= tcpPSH
	} else {
		th[13] &^= tcpPSH
	}
	var err error
	next := func() uint16 { // DECODE: one octet, or 0 and 16 bits
		if err != nil {
			return 0
		}
		if len(p) >= 1 && p[0] != 0 {
			v := uint16(p[0])
			p = p[1:]
			return v
		}
		if len(p) < 3 {
			err = errShort
			return 0
		}
		v := binary.BigEndian.Uint16(p[1:])
		p = p[3:]
		return v
	}
	add16 := func(b []byte, v uint16) { binary.BigEndian.PutUint16(b, binary.BigEndian.Uint16(b)+v) }
	add32 := func(b []byte, v uint32) { binary.BigEndian.PutUint32(b, binary.BigEndian.Uint32(b)+v) }
	// SPECIAL_I and SPECIAL_D carry no deltas: they advance by the data
	// length of the previous packet of the connection (RFC 1144 §3.2.2).
	olddata := uint32(s.ipLen() - hlen)
	switch changes & specials {
	case specialI:
		add32(th[8:], olddata)
		add32(th[4:], olddata)
	case specialD:
		add32(th[4:], olddata)
	default:
		if changes&newU != 0 {
			th[13] |= tcpURG
			binary.BigEndian.PutUint16(th[18:], next())
		} else {
			th[13] &^= tcpURG
		}
		if changes&newW != 0 {
			add16(th[14:], next())
		}
		if changes&newA != 0 {
			add32(th[8:], uint32(next()))
		}
		if changes&newS != 0 {
			add32(th[4:], uint32(next()))
		}
	}
	if changes&newI != 0 {
		add16(hdr[4:], next())
	} else {
		add16(hdr[4:], 1)
	}
	if err != nil {
		return dst, err
	}
	// The IP length and checksum are not sent: they are rebuilt from the
	// frame's length (RFC 1144 §3.2.5).
	total := hlen + len(p)
	if total > 0xffff {
		return dst, errBadPkt
	}
	binary.BigEndian.PutUint16(hdr[2:], uint16(total))
	hdr[10], hdr[11] = 0, 0
	binary.BigEndian.PutUint16(hdr[10:], ^checksum.Checksum(hdr[:ihl], 0))
	copy(s.hdr[:], hdr[:hlen])
	dst = append(dst, hdr[:hlen]...)
	return append(dst, p...), nil
}
