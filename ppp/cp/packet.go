package cp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Code is a control packet's Code field (RFC 1661 §5, RFC 1570 §2).
type Code uint8

// Codes. 1-7 are common to every control protocol; 8-13 are LCP's.
const (
	ConfReq        Code = 1
	ConfAck        Code = 2
	ConfNak        Code = 3
	ConfRej        Code = 4
	TermReq        Code = 5
	TermAck        Code = 6
	CodeRej        Code = 7
	ProtoRej       Code = 8
	EchoReq        Code = 9
	EchoReply      Code = 10
	DiscardReq     Code = 11
	Identification Code = 12 // RFC 1570 §2.1
	TimeRemaining  Code = 13 // RFC 1570 §2.2
)

var codeNames = [...]string{"Code0", "ConfReq", "ConfAck", "ConfNak", "ConfRej", "TermReq", "TermAck",
	"CodeRej", "ProtRej", "EchoReq", "EchoRep", "DiscReq", "Ident", "TimeRem"}

// String names the code as pppd's log does.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("Code%d", uint8(c))
}

// HeaderLen is the size of Code, Identifier and Length.
const HeaderLen = 4

var (
	errShortPacket = errors.New("cp: packet shorter than its header")
	errBadLength   = errors.New("cp: bad Length field")
	errShortOption = errors.New("cp: option shorter than its header")
	errOptionLen   = errors.New("cp: option Length exceeds the data")
)

// Packet is one control packet.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Code      |  Identifier   |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    Data ...
//	+-+-+-+-+
type Packet struct {
	Code Code
	ID   uint8
	Data []byte // aliases the buffer given to Unmarshal
}

// MarshalSize is the packet's length on the wire.
func (p *Packet) MarshalSize() int { return HeaderLen + len(p.Data) }

// MarshalTo writes the packet into b.
func (p *Packet) MarshalTo(b []byte) (int, error) {
	n := p.MarshalSize()
	if len(b) < n {
		return 0, io.ErrShortBuffer
	}
	if n > 0xFFFF {
		return 0, fmt.Errorf("%w: %d", errBadLength, n)
	}
	b[0], b[1] = byte(p.Code), p.ID
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	copy(b[HeaderLen:], p.Data)
	return n, nil
}

// Marshal returns the packet's wire form.
func (p *Packet) Marshal() ([]byte, error) {
	b := make([]byte, p.MarshalSize())
	_, err := p.MarshalTo(b)
	return b, err
}

// Unmarshal parses b. RFC 1661 §5: octets beyond Length are padding and
// ignored; a Length larger than the data makes the packet invalid.
func (p *Packet) Unmarshal(b []byte) error {
	if len(b) < HeaderLen {
		return fmt.Errorf("%w: %d octets", errShortPacket, len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < HeaderLen || n > len(b) {
		return fmt.Errorf("%w: %d with %d octets", errBadLength, n, len(b))
	}
	p.Code, p.ID, p.Data = Code(b[0]), b[1], b[HeaderLen:n]
	return nil
}

// Option is one configuration option as a raw TLV (RFC 1661 §5.8 format).
// Protocols decode the Data of the types they know; unknown types stay raw
// and go back in a Configure-Reject unchanged.
//
//	 0                   1
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |    Length     |    Data ...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Option struct {
	Type uint8
	Data []byte
}

// MarshalSize is the option's length on the wire.
func (o Option) MarshalSize() int { return 2 + len(o.Data) }

// MarshalTo writes the option into b.
func (o Option) MarshalTo(b []byte) (int, error) {
	n := o.MarshalSize()
	if n > 0xFF {
		return 0, fmt.Errorf("%w: option %d length %d", errOptionLen, o.Type, n)
	}
	if len(b) < n {
		return 0, io.ErrShortBuffer
	}
	b[0], b[1] = o.Type, byte(n)
	copy(b[2:], o.Data)
	return n, nil
}

// Options is a list of options in the order they appear in a packet.
type Options []Option

// ParseOptions splits a Configure packet's Data into options. The Data of
// each aliases b.
func ParseOptions(b []byte) (Options, error) {
	var opts Options
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: %d octet left", errShortOption, len(b))
		}
		l := int(b[1])
		if l < 2 {
			return nil, fmt.Errorf("%w: option %d length %d", errShortOption, b[0], l)
		}
		if l > len(b) {
			return nil, fmt.Errorf("%w: option %d length %d > %d", errOptionLen, b[0], l, len(b))
		}
		opts = append(opts, Option{Type: b[0], Data: b[2:l]})
		b = b[l:]
	}
	return opts, nil
}

// MarshalSize is the options' total length.
func (os Options) MarshalSize() int {
	n := 0
	for _, o := range os {
		n += o.MarshalSize()
	}
	return n
}

// MarshalTo writes the options into b.
func (os Options) MarshalTo(b []byte) (int, error) {
	n := 0
	for _, o := range os {
		m, err := o.MarshalTo(b[n:])
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// Marshal returns the options' wire form.
func (os Options) Marshal() ([]byte, error) {
	b := make([]byte, os.MarshalSize())
	_, err := os.MarshalTo(b)
	return b, err
}

// Append appends the wire form of os to dst; options too long for their
// length octet are the caller's bug and are skipped.
func (os Options) Append(dst []byte) []byte {
	for _, o := range os {
		if o.MarshalSize() > 0xFF {
			continue
		}
		dst = append(dst, o.Type, byte(o.MarshalSize()))
		dst = append(dst, o.Data...)
	}
	return dst
}
