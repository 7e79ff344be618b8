// Package pap is the Password Authentication Protocol's packet format
// (RFC 1334 §2). The packet header is cp.Packet's; this package encodes and
// decodes the Data of each code.
package pap

import (
	"errors"
	"fmt"
)

// Protocol is PAP's PPP protocol number.
const Protocol uint16 = 0xC023

// Codes (RFC 1334 §2.2).
const (
	AuthReq uint8 = 1
	AuthAck uint8 = 2
	AuthNak uint8 = 3
)

var errShort = errors.New("pap: packet data too short")

// Request is an Authenticate-Request's data.
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Peer-ID Length|  Peer-Id ...  | Passwd-Length |  Password ...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Request struct {
	PeerID   string
	Password string
}

// MarshalSize is the data's length.
func (r *Request) MarshalSize() int { return 2 + len(r.PeerID) + len(r.Password) }

// Marshal returns the data; names and passwords longer than 255 octets are cut.
func (r *Request) Marshal() ([]byte, error) {
	if len(r.PeerID) > 255 || len(r.Password) > 255 {
		return nil, fmt.Errorf("pap: peer-id %d or password %d octets > 255", len(r.PeerID), len(r.Password))
	}
	b := make([]byte, 0, r.MarshalSize())
	b = append(b, byte(len(r.PeerID)))
	b = append(b, r.PeerID...)
	b = append(b, byte(len(r.Password)))
	return append(b, r.Password...), nil
}

// Unmarshal parses the data; trailing octets are ignored.
func (r *Request) Unmarshal(b []byte) error {
	if len(b) < 1 || len(b) < 1+int(b[0])+1 {
		return fmt.Errorf("%w: peer-id", errShort)
	}
	r.PeerID = string(b[1 : 1+int(b[0])])
	b = b[1+int(b[0]):]
	if len(b) < 1+int(b[0]) {
		return fmt.Errorf("%w: password", errShort)
	}
	r.Password = string(b[1 : 1+int(b[0])])
	return nil
}

// Message is an Authenticate-Ack or -Nak's data: Msg-Length and Message.
type Message string

// Marshal returns the data.
func (m Message) Marshal() []byte {
	s := string(m)
	if len(s) > 255 {
		s = s[:255]
	}
	return append([]byte{byte(len(s))}, s...)
}

// ParseMessage parses Ack/Nak data. Missing data is an empty message (some
// peers send none).
func ParseMessage(b []byte) (Message, error) {
	if len(b) == 0 {
		return "", nil
	}
	if len(b) < 1+int(b[0]) {
		return "", fmt.Errorf("%w: message", errShort)
	}
	return Message(b[1 : 1+int(b[0])]), nil
}
