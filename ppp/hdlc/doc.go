// Package hdlc is PPP's asynchronous HDLC-like framing (RFC 1662 §4, §7):
// flag 0x7E delimits frames, 0x7D escapes the next octet (XOR 0x20), the
// Async-Control-Character-Map (ACCM) says which control characters are
// escaped, and a 16-bit FCS (§C.2) ends each frame.
//
// The package only frames bytes. Address/Control and Protocol field
// compression (ACFC, PFC; RFC 1661 §6.5, §6.6) are done by Header helpers so
// that the session can apply what LCP negotiated. Nothing here is
// serial-specific: a Reader takes any io.Reader.
package hdlc
