package hdlc

import "encoding/binary"

// Octets with a meaning on the wire (RFC 1662 §4.2).
const (
	Flag   byte = 0x7E // frame delimiter
	Escape byte = 0x7D // control escape: the next octet is XORed with 0x20
	xorBit byte = 0x20
)

// DefaultACCM is the ACCM in force until LCP negotiates another one: every
// control character 0x00-0x1F is escaped (RFC 1662 §7.1).
const DefaultACCM uint32 = 0xFFFFFFFF

// escapeSet is a 256-entry table of octets that must be escaped on
// transmission: the flag, the escape, and the control characters whose bit is
// set in the ACCM.
type escapeSet struct {
	t   [256]bool
	ctl bool // some control character is mapped
}

func newEscapeSet(accm uint32) *escapeSet {
	var s escapeSet
	for c := range 32 {
		s.t[c] = accm&(1<<c) != 0
	}
	s.t[Flag] = true
	s.t[Escape] = true
	s.ctl = accm != 0
	return &s
}

var escapeAll = newEscapeSet(DefaultACCM)

// Encoder frames outgoing PPP frames. The zero value is not ready; use
// NewEncoder. An Encoder is not safe for concurrent use: the session's owner
// goroutine holds it.
type Encoder struct {
	accm uint32
	esc  *escapeSet
}

// NewEncoder returns an encoder using the default ACCM (all control
// characters escaped).
func NewEncoder() *Encoder { return &Encoder{accm: DefaultACCM, esc: escapeAll} }

// SetACCM sets the peer's receive ACCM, i.e. the characters we must escape.
func (e *Encoder) SetACCM(accm uint32) {
	e.accm = accm
	if accm == DefaultACCM {
		e.esc = escapeAll
		return
	}
	e.esc = newEscapeSet(accm)
}

// ACCM returns the map in force for transmission.
func (e *Encoder) ACCM() uint32 { return e.accm }

// AppendFrame appends one framed frame to dst: an opening flag, hdr and info
// escaped, the FCS escaped, and a closing flag. hdr is the address/control and
// protocol fields (possibly compressed) and info the payload; keeping them apart
// spares the caller a copy. If defaultMap is true the default ACCM is used
// regardless of negotiation, as RFC 1662 §7.1 requires for LCP
// Configure/Terminate/Code-Reject packets.
func (e *Encoder) AppendFrame(dst, hdr, info []byte, defaultMap bool) []byte {
	esc := e.esc
	if defaultMap {
		esc = escapeAll
	}
	fcs := FCS16(FCS16(InitFCS, hdr), info) ^ 0xFFFF
	// RFC 1662 §C.2: the FCS goes out least significant octet first.
	tail := [2]byte{byte(fcs), byte(fcs >> 8)}
	if n := len(dst) + len(hdr) + len(info) + len(info)/8 + 16; cap(dst) < n {
		nd := make([]byte, len(dst), n)
		copy(nd, dst)
		dst = nd
	}
	dst = append(dst, Flag)
	dst = appendEscaped(dst, hdr, esc)
	dst = appendEscaped(dst, info, esc)
	dst = appendEscaped(dst, tail[:], esc)
	return append(dst, Flag)
}

// appendEscaped copies runs of octets that need no escaping in one append
// each, so the common case (ACCM 0, no 0x7E/0x7D) is a scan and a memmove.
func appendEscaped(dst, p []byte, esc *escapeSet) []byte {
	for len(p) > 0 {
		i := nextEscape(p, esc)
		dst = append(dst, p[:i]...)
		if i == len(p) {
			break
		}
		dst = append(dst, Escape, p[i]^xorBit)
		p = p[i+1:]
	}
	return dst
}

const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

// nextEscape returns the index of the first octet of p that needs escaping,
// or len(p). Eight octets at a time are tested for 0x7E, 0x7D and (if any
// control character is mapped) anything below 0x20; a word that may hold one
// is then checked octet by octet against the table.
func nextEscape(p []byte, esc *escapeSet) int {
	ctl := esc.ctl
	i := 0
	for {
		for i+8 <= len(p) {
			v := binary.LittleEndian.Uint64(p[i:])
			x := v ^ (swarLo * uint64(Flag))
			y := v ^ (swarLo * uint64(Escape))
			m := (x - swarLo) &^ x
			m |= (y - swarLo) &^ y
			if ctl {
				m |= (v - swarLo*0x20) &^ v
			}
			if m&swarHi != 0 {
				break
			}
			i += 8
		}
		end := min(i+8, len(p))
		for ; i < end; i++ {
			if esc.t[p[i]] {
				return i
			}
		}
		if i == len(p) {
			return i
		}
	}
}
