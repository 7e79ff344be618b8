// Package ipcp holds the IP Control Protocol's options (RFC 1332, and RFC
// 1877's DNS and NBNS addresses) as typed values over cp.Option.
package ipcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/isp-box/isp-box/ppp/cp"
)

// Protocol numbers: IPCP itself, IPv4 datagrams, and VJ compressed and
// uncompressed TCP/IP (RFC 1332 §3.2, RFC 1144).
const (
	Protocol   uint16 = 0x8021
	ProtoIP    uint16 = 0x0021
	ProtoVJC   uint16 = 0x002D
	ProtoVJUC  uint16 = 0x002F
	ProtoVJOld uint16 = 0x0037 // some old peers sent this in a 4-octet option
)

// Option types.
const (
	OptAddresses   uint8 = 1 // IP-Addresses, deprecated (RFC 1172)
	OptCompression uint8 = 2 // IP-Compression-Protocol
	OptAddress     uint8 = 3 // IP-Address
	OptDNS1        uint8 = 129
	OptNBNS1       uint8 = 130
	OptDNS2        uint8 = 131
	OptNBNS2       uint8 = 132
)

var errOptionSize = errors.New("ipcp: option has the wrong size")

// Option is an IPCP option decoded to its type.
type Option interface {
	// Encode returns the option as a TLV.
	Encode() cp.Option
}

var (
	_ Option = Address{}
	_ Option = Addresses{}
	_ Option = Compression{}
	_ Option = Raw{}
)

// Address is IP-Address (3) or one of RFC 1877's 129-132: one IPv4 address.
type Address struct {
	Type uint8
	Addr netip.Addr
}

// Encode implements Option.
func (a Address) Encode() cp.Option {
	b := a.Addr.As4()
	return cp.Option{Type: a.Type, Data: b[:]}
}

// Addresses is the deprecated IP-Addresses option: source and destination.
type Addresses struct{ Src, Dst netip.Addr }

// Encode implements Option.
func (a Addresses) Encode() cp.Option {
	s, d := a.Src.As4(), a.Dst.As4()
	return cp.Option{Type: OptAddresses, Data: append(s[:], d[:]...)}
}

// Compression is IP-Compression-Protocol. For VJ (0x002D) RFC 1332 §4 adds
// Max-Slot-Id and Comp-Slot-Id; Old marks the 4-octet form without them.
type Compression struct {
	Protocol uint16
	MaxSlot  uint8
	CompSlot uint8
	Old      bool
	Extra    []byte // octets after the slots, or after Protocol if not VJ
}

// Encode implements Option.
func (c Compression) Encode() cp.Option {
	d := binary.BigEndian.AppendUint16(nil, c.Protocol)
	if !c.Old && c.Protocol == ProtoVJC {
		d = append(d, c.MaxSlot, c.CompSlot)
	}
	return cp.Option{Type: OptCompression, Data: append(d, c.Extra...)}
}

// Raw is an option this package does not know.
type Raw cp.Option

// Encode implements Option.
func (r Raw) Encode() cp.Option { return cp.Option(r) }

// Decode types the option o.
func Decode(o cp.Option) (Option, error) {
	switch o.Type {
	case OptAddress, OptDNS1, OptNBNS1, OptDNS2, OptNBNS2:
		if len(o.Data) != 4 {
			return nil, fmt.Errorf("%w: type %d length %d", errOptionSize, o.Type, len(o.Data)+2)
		}
		return Address{Type: o.Type, Addr: netip.AddrFrom4([4]byte(o.Data))}, nil
	case OptAddresses:
		if len(o.Data) != 8 {
			return nil, fmt.Errorf("%w: IP-Addresses length %d", errOptionSize, len(o.Data)+2)
		}
		return Addresses{Src: netip.AddrFrom4([4]byte(o.Data[:4])), Dst: netip.AddrFrom4([4]byte(o.Data[4:]))}, nil
	case OptCompression:
		if len(o.Data) < 2 {
			return nil, fmt.Errorf("%w: compression length %d", errOptionSize, len(o.Data)+2)
		}
		c := Compression{Protocol: binary.BigEndian.Uint16(o.Data)}
		rest := o.Data[2:]
		if c.Protocol == ProtoVJC {
			if len(rest) < 2 {
				c.Old = true
			} else {
				c.MaxSlot, c.CompSlot = rest[0], rest[1]
				rest = rest[2:]
			}
		}
		if len(rest) > 0 {
			c.Extra = rest
		}
		return c, nil
	}
	return Raw(o), nil
}
