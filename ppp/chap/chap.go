// Package chap is the Challenge-Handshake Authentication Protocol (RFC 1994)
// with its three algorithms: MD5 (5), Microsoft's MS-CHAPv1 (0x80, RFC 2433)
// and MS-CHAPv2 (0x81, RFC 2759). It has the packet data codec and the
// response computations both roles need; who challenges whom is the
// session's business.
package chap

import (
	"crypto/des"
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// Protocol is CHAP's PPP protocol number.
const Protocol uint16 = 0xC223

// Codes (RFC 1994 §4).
const (
	Challenge uint8 = 1
	Response  uint8 = 2
	Success   uint8 = 3
	Failure   uint8 = 4
)

// Algorithms as carried in LCP's Authentication-Protocol option.
const (
	MD5      uint8 = 5
	MSCHAPv1 uint8 = 0x80
	MSCHAPv2 uint8 = 0x81
)

// Sizes of challenge and response values.
const (
	MSv1ChallengeLen = 8
	MSv2ChallengeLen = 16
	MSResponseLen    = 49 // RFC 2433 §3 / RFC 2759 §4
)

var errShort = errors.New("chap: packet data too short")

// Value is a Challenge's or Response's data.
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Value-Size   |  Value ...    |  Name ...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Value struct {
	Value []byte
	Name  string
}

// MarshalSize is the data's length.
func (v *Value) MarshalSize() int { return 1 + len(v.Value) + len(v.Name) }

// Marshal returns the data.
func (v *Value) Marshal() ([]byte, error) {
	if len(v.Value) > 255 {
		return nil, fmt.Errorf("chap: value of %d octets > 255", len(v.Value))
	}
	b := make([]byte, 0, v.MarshalSize())
	b = append(b, byte(len(v.Value)))
	b = append(b, v.Value...)
	return append(b, v.Name...), nil
}

// Unmarshal parses the data; Value aliases b.
func (v *Value) Unmarshal(b []byte) error {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return fmt.Errorf("%w: value", errShort)
	}
	v.Value = b[1 : 1+int(b[0])]
	v.Name = string(b[1+int(b[0]):])
	return nil
}

// MD5Response is RFC 1994 §4.1's response: MD5(Identifier ‖ secret ‖ challenge).
func MD5Response(id uint8, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// NTPasswordHash is MD4 of the password in UTF-16LE (RFC 2433 §A.2).
func NTPasswordHash(password string) [16]byte {
	u := utf16.Encode([]rune(password))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c), byte(c>>8)
	}
	return md4(b)
}

// desKey spreads 7 octets over 8 with a (here unused) parity bit each
// (RFC 2433 §A.6 "DesEncrypt").
func desKey(k []byte) []byte {
	return []byte{
		k[0] & 0xfe,
		(k[0]<<7 | k[1]>>1) & 0xfe,
		(k[1]<<6 | k[2]>>2) & 0xfe,
		(k[2]<<5 | k[3]>>3) & 0xfe,
		(k[3]<<4 | k[4]>>4) & 0xfe,
		(k[4]<<3 | k[5]>>5) & 0xfe,
		(k[5]<<2 | k[6]>>6) & 0xfe,
		k[6] << 1,
	}
}

// ChallengeResponse encrypts an 8-octet challenge with the three 7-octet
// thirds of the zero-padded 21-octet password hash (RFC 2759 §8.5).
func ChallengeResponse(challenge []byte, hash [16]byte) [24]byte {
	var z [21]byte
	copy(z[:], hash[:])
	var out [24]byte
	for i := range 3 {
		c, _ := des.NewCipher(desKey(z[7*i : 7*i+7]))
		c.Encrypt(out[8*i:], challenge[:8])
	}
	return out
}

// MSv1Response is the 49-octet MS-CHAPv1 response value (RFC 2433 §3): no
// LAN Manager response (24 zero octets), the NT response, and flag 1 "use NT".
func MSv1Response(challenge []byte, password string) []byte {
	nt := ChallengeResponse(challenge, NTPasswordHash(password))
	v := make([]byte, MSResponseLen)
	copy(v[24:48], nt[:])
	v[48] = 1
	return v
}

// stripDomain drops a "DOMAIN\" prefix: RFC 2759 §8.2 hashes the bare user name.
func stripDomain(user string) string {
	if i := strings.LastIndexByte(user, '\\'); i >= 0 {
		return user[i+1:]
	}
	return user
}

// ChallengeHash is RFC 2759 §8.2: SHA1(PeerChallenge ‖ AuthenticatorChallenge ‖ UserName)[:8].
func ChallengeHash(peer, auth []byte, user string) []byte {
	h := sha1.New()
	h.Write(peer)
	h.Write(auth)
	h.Write([]byte(stripDomain(user)))
	return h.Sum(nil)[:8]
}

// MSv2NTResponse is RFC 2759 §8.1 GenerateNTResponse.
func MSv2NTResponse(auth, peer []byte, user, password string) [24]byte {
	return ChallengeResponse(ChallengeHash(peer, auth, user), NTPasswordHash(password))
}

// MSv2Response is the 49-octet MS-CHAPv2 response value (RFC 2759 §4):
// Peer-Challenge, 8 reserved zero octets, NT-Response, Flags 0.
func MSv2Response(auth, peer []byte, user, password string) []byte {
	nt := MSv2NTResponse(auth, peer, user, password)
	v := make([]byte, MSResponseLen)
	copy(v[:16], peer)
	copy(v[24:48], nt[:])
	return v
}

var (
	magic1 = []byte("Magic server to client signing constant")
	magic2 = []byte("Pad to make it do more than one iteration")
)

// AuthenticatorResponse is RFC 2759 §8.7: "S=" and 40 upper-case hex digits,
// which the server sends in Success and the client checks.
func AuthenticatorResponse(password string, nt []byte, peer, auth []byte, user string) string {
	ph := NTPasswordHash(password)
	phh := md4(ph[:])
	h := sha1.New()
	h.Write(phh[:])
	h.Write(nt)
	h.Write(magic1)
	digest := h.Sum(nil)
	h = sha1.New()
	h.Write(digest)
	h.Write(ChallengeHash(peer, auth, user))
	h.Write(magic2)
	return "S=" + strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
}

// Verify checks a response value against the secret for the given algorithm.
// For MS-CHAPv2 it also returns the authenticator response for Success.
func Verify(alg uint8, id uint8, challenge, value []byte, user, secret string) (ok bool, authResp string) {
	switch alg {
	case MD5:
		want := MD5Response(id, secret, challenge)
		return len(value) == len(want) && subtle.ConstantTimeCompare(value, want) == 1, ""
	case MSCHAPv1:
		if len(value) != MSResponseLen || len(challenge) != MSv1ChallengeLen || value[48] != 1 {
			return false, ""
		}
		nt := ChallengeResponse(challenge, NTPasswordHash(secret))
		return subtle.ConstantTimeCompare(value[24:48], nt[:]) == 1, ""
	case MSCHAPv2:
		if len(value) != MSResponseLen || len(challenge) != MSv2ChallengeLen {
			return false, ""
		}
		nt := MSv2NTResponse(challenge, value[:16], user, secret)
		if subtle.ConstantTimeCompare(value[24:48], nt[:]) != 1 {
			return false, ""
		}
		return true, AuthenticatorResponse(secret, nt[:], value[:16], challenge, user)
	}
	return false, ""
}
