package hdlc

import (
	"errors"
	"fmt"
)

// Address and control octets of every PPP frame (RFC 1662 §3.1, §3.2).
const (
	AllStations byte = 0xFF
	UI          byte = 0x03
)

// ErrBadHeader: a frame whose address/control or protocol field is malformed.
var ErrBadHeader = errors.New("hdlc: bad frame header")

// ParseHeader splits a deframed frame into its protocol and information.
// Address/control may be absent (ACFC) and the protocol may be one octet
// (PFC) whatever was negotiated: RFC 1661 §6.5/6.6 let a receiver accept both.
func ParseHeader(f []byte) (proto uint16, info []byte, err error) {
	if len(f) >= 2 && f[0] == AllStations && f[1] == UI {
		f = f[2:]
	}
	if len(f) == 0 {
		return 0, nil, fmt.Errorf("%w: empty", ErrBadHeader)
	}
	// RFC 1661 §2: protocol values are odd in the low octet and even in the
	// high one, so an odd first octet is a compressed one-octet field.
	if f[0]&1 == 1 {
		return uint16(f[0]), f[1:], nil
	}
	if len(f) < 2 || f[1]&1 == 0 {
		return 0, nil, fmt.Errorf("%w: protocol % x", ErrBadHeader, f[:min(len(f), 2)])
	}
	return uint16(f[0])<<8 | uint16(f[1]), f[2:], nil
}

// AppendHeader appends the address/control and protocol fields: without
// FF 03 if acfc, with a one-octet protocol if pfc and the protocol allows it.
func AppendHeader(dst []byte, proto uint16, acfc, pfc bool) []byte {
	if !acfc {
		dst = append(dst, AllStations, UI)
	}
	if pfc && proto < 0x100 {
		return append(dst, byte(proto))
	}
	return append(dst, byte(proto>>8), byte(proto))
}
