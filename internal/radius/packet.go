// Package radius is a RADIUS client: the packet codec (RFC 2865 §3, §5),
// User-Password hiding, Message-Authenticator (RFC 2869 §5.14, RFC 3579
// §3.2), the Microsoft vendor attributes of RFC 2548, and a client that
// sends Access-Requests and Accounting-Requests (RFC 2866) to a list of
// servers with retransmission and fail-over.
package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// Code is a packet's Code field (RFC 2865 §3, RFC 2866 §3).
type Code uint8

// Codes.
const (
	AccessRequest      Code = 1
	AccessAccept       Code = 2
	AccessReject       Code = 3
	AccountingRequest  Code = 4
	AccountingResponse Code = 5
	AccessChallenge    Code = 11
)

func (c Code) String() string {
	switch c {
	case AccessRequest:
		return "Access-Request"
	case AccessAccept:
		return "Access-Accept"
	case AccessReject:
		return "Access-Reject"
	case AccountingRequest:
		return "Accounting-Request"
	case AccountingResponse:
		return "Accounting-Response"
	case AccessChallenge:
		return "Access-Challenge"
	}
	return fmt.Sprintf("Code(%d)", uint8(c))
}

// Sizes (RFC 2865 §3).
const (
	headerLen = 20
	MinLen    = headerLen
	MaxLen    = 4096
	authLen   = 16
)

var (
	errShort      = errors.New("radius: packet too short")
	errLength     = errors.New("radius: bad length field")
	errAttrLength = errors.New("radius: bad attribute length")
	errTooLong    = errors.New("radius: packet longer than 4096 octets")
	errAttrValue  = errors.New("radius: attribute value longer than 253 octets")
	// ErrAuthenticator means a reply's Response Authenticator or
	// Message-Authenticator does not match: almost always a wrong shared
	// secret on one side.
	ErrAuthenticator = errors.New("radius: authenticator mismatch (wrong shared secret?)")
)

// Attr is one attribute as it is on the wire; Vendor-Specific (26) keeps
// its vendor id and sub-attributes in Value (see VSA).
type Attr struct {
	Type  uint8
	Value []byte
}

// Packet is one RADIUS packet.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Code      |  Identifier   |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Authenticator (16)                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Attributes ...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-
type Packet struct {
	Code          Code
	ID            uint8
	Authenticator [authLen]byte
	Attrs         []Attr
}

// Parse decodes b. Attributes alias b. Octets after Length are padding
// and ignored (RFC 2865 §3); a Length beyond b is an error.
func Parse(b []byte) (*Packet, error) {
	if len(b) < headerLen {
		return nil, fmt.Errorf("%w: %d octets", errShort, len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < headerLen || n > MaxLen || n > len(b) {
		return nil, fmt.Errorf("%w: %d (have %d octets)", errLength, n, len(b))
	}
	p := &Packet{Code: Code(b[0]), ID: b[1]}
	copy(p.Authenticator[:], b[4:20])
	for i := headerLen; i < n; {
		if n-i < 2 {
			return nil, fmt.Errorf("%w: truncated header at %d", errAttrLength, i)
		}
		l := int(b[i+1])
		if l < 2 || i+l > n {
			return nil, fmt.Errorf("%w: type %d length %d at %d", errAttrLength, b[i], l, i)
		}
		p.Attrs = append(p.Attrs, Attr{Type: b[i], Value: b[i+2 : i+l]})
		i += l
	}
	return p, nil
}

// Marshal encodes p as it stands (authenticators are the caller's: see
// Client, which fills them).
func (p *Packet) Marshal() ([]byte, error) {
	n := headerLen
	for _, a := range p.Attrs {
		if len(a.Value) > 253 {
			return nil, fmt.Errorf("%w: type %d, %d octets", errAttrValue, a.Type, len(a.Value))
		}
		n += 2 + len(a.Value)
	}
	if n > MaxLen {
		return nil, fmt.Errorf("%w: %d", errTooLong, n)
	}
	b := make([]byte, headerLen, n)
	b[0], b[1] = byte(p.Code), p.ID
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	copy(b[4:20], p.Authenticator[:])
	for _, a := range p.Attrs {
		b = append(b, a.Type, byte(2+len(a.Value)))
		b = append(b, a.Value...)
	}
	return b, nil
}

// Add appends an attribute.
func (p *Packet) Add(t uint8, v []byte) { p.Attrs = append(p.Attrs, Attr{Type: t, Value: v}) }

// AddString appends a text attribute.
func (p *Packet) AddString(t uint8, s string) { p.Add(t, []byte(s)) }

// AddUint32 appends an integer attribute.
func (p *Packet) AddUint32(t uint8, v uint32) { p.Add(t, binary.BigEndian.AppendUint32(nil, v)) }

// AddVSA appends a Vendor-Specific attribute holding one sub-attribute.
func (p *Packet) AddVSA(vendor uint32, t uint8, v []byte) {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 6+len(v)), vendor)
	b = append(b, t, byte(2+len(v)))
	p.Add(AttrVendorSpecific, append(b, v...))
}

// Get returns the first attribute of type t.
func (p *Packet) Get(t uint8) ([]byte, bool) {
	for _, a := range p.Attrs {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

// All returns every attribute of type t, in order.
func (p *Packet) All(t uint8) [][]byte {
	var out [][]byte
	for _, a := range p.Attrs {
		if a.Type == t {
			out = append(out, a.Value)
		}
	}
	return out
}

// Uint32 returns the first attribute of type t as an integer.
func (p *Packet) Uint32(t uint8) (uint32, bool) {
	v, ok := p.Get(t)
	if !ok || len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// VSA returns the first sub-attribute t of vendor in any Vendor-Specific
// attribute (RFC 2865 §5.26's recommended format: type, length, value).
func (p *Packet) VSA(vendor uint32, t uint8) ([]byte, bool) {
	for _, a := range p.Attrs {
		if a.Type != AttrVendorSpecific || len(a.Value) < 4 || binary.BigEndian.Uint32(a.Value) != vendor {
			continue
		}
		for b := a.Value[4:]; len(b) >= 2; {
			l := int(b[1])
			if l < 2 || l > len(b) {
				break
			}
			if b[0] == t {
				return b[2:l], true
			}
			b = b[l:]
		}
	}
	return nil, false
}

// hidePassword is RFC 2865 §5.2: the password, padded with zeros to a
// multiple of 16, XORed with MD5(secret ‖ previous block), the first
// block's previous being the Request Authenticator.
func hidePassword(pw []byte, secret string, ra [authLen]byte) []byte {
	n := (len(pw) + 15) / 16 * 16
	if n == 0 {
		n = 16
	}
	out := make([]byte, n)
	copy(out, pw)
	prev := ra[:]
	for i := 0; i < n; i += 16 {
		h := md5.New()
		h.Write([]byte(secret))
		h.Write(prev)
		s := h.Sum(nil)
		for j := range 16 {
			out[i+j] ^= s[j]
		}
		prev = out[i : i+16]
	}
	return out
}

// unhidePassword reverses hidePassword (tests, and a server side if ever).
func unhidePassword(c []byte, secret string, ra [authLen]byte) []byte {
	out := make([]byte, len(c))
	prev := ra[:]
	for i := 0; i+16 <= len(c); i += 16 {
		h := md5.New()
		h.Write([]byte(secret))
		h.Write(prev)
		s := h.Sum(nil)
		for j := range 16 {
			out[i+j] = c[i+j] ^ s[j]
		}
		prev = c[i : i+16]
	}
	for len(out) > 0 && out[len(out)-1] == 0 {
		out = out[:len(out)-1]
	}
	return out
}

// messageAuthenticator computes RFC 2869 §5.14's HMAC-MD5 over b, whose
// Message-Authenticator value (at off) must be zero and whose
// Authenticator field holds the request's authenticator.
func messageAuthenticator(b []byte, secret string) []byte {
	m := hmac.New(md5.New, []byte(secret))
	m.Write(b)
	return m.Sum(nil)
}

// findAttr returns the offset of the first attribute of type t's value in
// the encoded packet b, or -1.
func findAttr(b []byte, t uint8) int {
	for i := headerLen; i+2 <= len(b); {
		l := int(b[i+1])
		if l < 2 {
			return -1
		}
		if b[i] == t {
			return i + 2
		}
		i += l
	}
	return -1
}

// responseAuthenticator is RFC 2865 §3: MD5(Code ‖ ID ‖ Length ‖
// RequestAuth ‖ Attributes ‖ Secret); b's Authenticator field must hold
// RequestAuth. It is also the Accounting-Request's Request Authenticator
// with RequestAuth all zero (RFC 2866 §3).
func responseAuthenticator(b []byte, secret string) [authLen]byte {
	h := md5.New()
	h.Write(b)
	h.Write([]byte(secret))
	var out [authLen]byte
	copy(out[:], h.Sum(nil))
	return out
}

// VerifyReply checks a reply b to the request whose authenticator was
// reqAuth: the Response Authenticator and, if present, the
// Message-Authenticator. requireMA makes a missing Message-Authenticator
// an error (RFC 3579 §3.2 for replies to requests that carried one).
func VerifyReply(b []byte, reqAuth [authLen]byte, secret string, requireMA bool) error {
	if len(b) < headerLen {
		return errShort
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < headerLen || n > len(b) {
		return errLength
	}
	c := append([]byte(nil), b[:n]...)
	copy(c[4:20], reqAuth[:])
	want := responseAuthenticator(c, secret)
	if subtle.ConstantTimeCompare(want[:], b[4:20]) != 1 {
		return fmt.Errorf("%w: Response Authenticator", ErrAuthenticator)
	}
	off := findAttr(c, AttrMessageAuthenticator)
	if off < 0 {
		if requireMA {
			return fmt.Errorf("%w: reply has no Message-Authenticator", ErrAuthenticator)
		}
		return nil
	}
	if off+16 > len(c) || c[off-1] != 18 {
		return fmt.Errorf("%w: Message-Authenticator of bad length", ErrAuthenticator)
	}
	got := append([]byte(nil), c[off:off+16]...)
	clear(c[off : off+16])
	if subtle.ConstantTimeCompare(messageAuthenticator(c, secret), got) != 1 {
		return fmt.Errorf("%w: Message-Authenticator", ErrAuthenticator)
	}
	return nil
}
