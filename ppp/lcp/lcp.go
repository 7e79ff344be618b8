// Package lcp holds the Link Control Protocol's wire vocabulary (RFC 1661
// §6, RFC 1570, RFC 1990): its configuration options as typed values over
// cp.Option, and the protocol numbers LCP talks about. Negotiation policy
// (what a server or a client accepts) lives with the session in package ppp.
package lcp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/isp-box/isp-box/ppp/cp"
)

// Protocol is LCP's PPP protocol number.
const Protocol uint16 = 0xC021

// Protocol numbers of authentication protocols (RFC 1334, RFC 1994).
const (
	ProtoPAP  uint16 = 0xC023
	ProtoCHAP uint16 = 0xC223
	ProtoEAP  uint16 = 0xC227
)

// CHAP algorithms carried in the Authentication-Protocol option.
const (
	CHAPMD5      uint8 = 5    // RFC 1994
	CHAPMSv1     uint8 = 0x80 // RFC 2433
	CHAPMSv2     uint8 = 0x81 // RFC 2759
	CallbackCBCP uint8 = 6    // RFC 1570 §2.3 operation 6: Microsoft CBCP
)

// Option types (RFC 1661 §6, RFC 1570, RFC 1990, RFC 2125).
const (
	OptMRU      uint8 = 1
	OptACCM     uint8 = 2
	OptAuth     uint8 = 3
	OptQuality  uint8 = 4
	OptMagic    uint8 = 5
	OptPFC      uint8 = 7
	OptACFC     uint8 = 8
	OptFCSAlt   uint8 = 9
	OptCallback uint8 = 13
	OptMRRU     uint8 = 17
	OptShortSeq uint8 = 18
	OptEndpoint uint8 = 19
	OptLinkDisc uint8 = 23
	DefaultMRU        = 1500
)

var errOptionSize = errors.New("lcp: option has the wrong size")

// Option is an LCP option decoded to its type.
type Option interface {
	// Encode returns the option as a TLV.
	Encode() cp.Option
}

// Compile-time checks that every option type is an Option.
var (
	_ Option = MRU(0)
	_ Option = ACCM(0)
	_ Option = Auth{}
	_ Option = Magic(0)
	_ Option = PFC{}
	_ Option = ACFC{}
	_ Option = Callback{}
	_ Option = MRRU(0)
	_ Option = Raw{}
)

// MRU is Maximum-Receive-Unit (§6.1).
type MRU uint16

// Encode implements Option.
func (m MRU) Encode() cp.Option { return cp.Option{Type: OptMRU, Data: u16(uint16(m))} }

// ACCM is Async-Control-Character-Map (RFC 1662 §7.1).
type ACCM uint32

// Encode implements Option.
func (a ACCM) Encode() cp.Option { return cp.Option{Type: OptACCM, Data: u32(uint32(a))} }

// Auth is Authentication-Protocol (§6.2). For CHAP, Data[0] is the
// algorithm; for PAP Data is empty.
type Auth struct {
	Protocol uint16
	Data     []byte
}

// Encode implements Option.
func (a Auth) Encode() cp.Option {
	return cp.Option{Type: OptAuth, Data: append(u16(a.Protocol), a.Data...)}
}

// Algorithm returns CHAP's algorithm octet, or 0.
func (a Auth) Algorithm() uint8 {
	if a.Protocol == ProtoCHAP && len(a.Data) == 1 {
		return a.Data[0]
	}
	return 0
}

// Magic is Magic-Number (§6.4).
type Magic uint32

// Encode implements Option.
func (m Magic) Encode() cp.Option { return cp.Option{Type: OptMagic, Data: u32(uint32(m))} }

// PFC is Protocol-Field-Compression (§6.5).
type PFC struct{}

// Encode implements Option.
func (PFC) Encode() cp.Option { return cp.Option{Type: OptPFC, Data: []byte{}} }

// ACFC is Address-and-Control-Field-Compression (§6.6).
type ACFC struct{}

// Encode implements Option.
func (ACFC) Encode() cp.Option { return cp.Option{Type: OptACFC, Data: []byte{}} }

// Callback is RFC 1570 §2.3's Callback option (Operation 6 = Microsoft CBCP).
type Callback struct {
	Operation uint8
	Message   []byte
}

// Encode implements Option.
func (c Callback) Encode() cp.Option {
	return cp.Option{Type: OptCallback, Data: append([]byte{c.Operation}, c.Message...)}
}

// MRRU is Multilink Maximum-Received-Reconstructed-Unit (RFC 1990 §5.1.1).
type MRRU uint16

// Encode implements Option.
func (m MRRU) Encode() cp.Option { return cp.Option{Type: OptMRRU, Data: u16(uint16(m))} }

// Raw is an option this package does not decode (endpoint discriminator,
// link discriminator, quality protocol, unknown types): it goes back in a
// Configure-Reject unchanged.
type Raw cp.Option

// Encode implements Option.
func (r Raw) Encode() cp.Option { return cp.Option(r) }

// Decode types the option o. A known type with the wrong size is an error;
// an unknown type is Raw.
func Decode(o cp.Option) (Option, error) {
	size := func(n int) error {
		if len(o.Data) != n {
			return fmt.Errorf("%w: type %d length %d, want %d", errOptionSize, o.Type, len(o.Data)+2, n+2)
		}
		return nil
	}
	switch o.Type {
	case OptMRU:
		if err := size(2); err != nil {
			return nil, err
		}
		return MRU(binary.BigEndian.Uint16(o.Data)), nil
	case OptACCM:
		if err := size(4); err != nil {
			return nil, err
		}
		return ACCM(binary.BigEndian.Uint32(o.Data)), nil
	case OptAuth:
		if len(o.Data) < 2 {
			return nil, fmt.Errorf("%w: auth length %d", errOptionSize, len(o.Data)+2)
		}
		return Auth{Protocol: binary.BigEndian.Uint16(o.Data), Data: o.Data[2:]}, nil
	case OptMagic:
		if err := size(4); err != nil {
			return nil, err
		}
		return Magic(binary.BigEndian.Uint32(o.Data)), nil
	case OptPFC:
		if err := size(0); err != nil {
			return nil, err
		}
		return PFC{}, nil
	case OptACFC:
		if err := size(0); err != nil {
			return nil, err
		}
		return ACFC{}, nil
	case OptCallback:
		if len(o.Data) < 1 {
			return nil, fmt.Errorf("%w: callback length 2", errOptionSize)
		}
		return Callback{Operation: o.Data[0], Message: o.Data[1:]}, nil
	case OptMRRU:
		if err := size(2); err != nil {
			return nil, err
		}
		return MRRU(binary.BigEndian.Uint16(o.Data)), nil
	}
	return Raw(o), nil
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// ProtocolName names a PPP protocol number for logs, as pppd does.
func ProtocolName(p uint16) string {
	switch p {
	case 0x0021:
		return "IP"
	case 0x002d:
		return "VJC"
	case 0x002f:
		return "VJUC"
	case Protocol:
		return "LCP"
	case ProtoPAP:
		return "PAP"
	case ProtoCHAP:
		return "CHAP"
	case ProtoEAP:
		return "EAP"
	case 0x8021:
		return "IPCP"
	case 0x802b:
		return "IPXCP"
	case 0x803f:
		return "NBFCP"
	case 0x80fd:
		return "CCP"
	case 0x8057:
		return "IPV6CP"
	case 0xc029:
		return "CBCP"
	case 0xc025:
		return "LQR"
	}
	return fmt.Sprintf("0x%04x", p)
}
