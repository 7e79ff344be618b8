package pbx

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// NonceTTL is how long a nonce we issued may be used.
const NonceTTL = 30 * time.Second

// maxUsedNonces bounds the used-nonce set. Only a request with one of our
// fresh nonces, bound to its source, gets in (a round trip per guess, and
// the per-name guess rate limits those), so the set stays far below this;
// when it is full a nonce is refused as stale and the client is asked again.
const maxUsedNonces = 1 << 16

// nonces issues and checks digest nonces. A nonce is
// "<12 hex issue time><4 hex counter><12 hex mac>", the mac over the
// time, the counter and the address:port it was sent to: a nonce fetched from one address is worth
// nothing from another, so a spoofed source can never get a guess counted
// against the address it forges (it never sees the challenges sent there).
type nonces struct {
	key [32]byte
	seq atomic.Uint32 // makes two nonces of one millisecond differ
	mu  sync.Mutex
	// used holds nonces accepted once, until they expire anyway; order
	// is the same nonces by time of use, so expiry is O(1) per nonce.
	used  map[[14]byte]struct{}
	order []usedNonce
	head  int
}

type usedNonce struct {
	raw   [14]byte
	until time.Time // when check refuses it by time anyway
}

func newNonces() *nonces {
	n := &nonces{used: map[[14]byte]struct{}{}}
	if _, err := rand.Read(n.key[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func (n *nonces) mac(ts []byte, src netip.AddrPort) []byte {
	m := hmac.New(sha256.New, n.key[:])
	m.Write(ts)
	a := src.Addr().Unmap().As16()
	m.Write(a[:])
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], src.Port())
	m.Write(p[:])
	return m.Sum(nil)[:6]
}

// issue returns a fresh nonce for a challenge sent to src.
func (n *nonces) issue(now time.Time, src netip.AddrPort) string {
	var b [14]byte
	putMillis(b[:6], now)
	binary.BigEndian.PutUint16(b[6:8], uint16(n.seq.Add(1)))
	copy(b[8:], n.mac(b[:8], src))
	return hex.EncodeToString(b[:])
}

// putMillis and getMillis keep the issue time in 48 bits of Unix
// milliseconds: short, because every byte of a challenge counts against
// the size of what a stranger can make the box send.
func putMillis(b []byte, t time.Time) {
	var x [8]byte
	binary.BigEndian.PutUint64(x[:], uint64(t.UnixMilli()))
	copy(b, x[2:])
}

func getMillis(b []byte) time.Time {
	var x [8]byte
	copy(x[2:], b)
	return time.UnixMilli(int64(binary.BigEndian.Uint64(x[:])))
}

type nonceState uint8

const (
	nonceBad   nonceState = iota // not ours, or sent to another source
	nonceFresh                   // ours, for this source, in time, never used
	nonceStale                   // ours but expired
	nonceUsed                    // ours, in time, already used once
)

func decodeNonce(nonce string) (raw [14]byte, ok bool) {
	if len(nonce) != 28 {
		return raw, false
	}
	if _, err := hex.Decode(raw[:], []byte(nonce)); err != nil {
		return raw, false
	}
	return raw, true
}

// check classifies a nonce presented by src without consuming it.
func (n *nonces) check(nonce string, src netip.AddrPort, now time.Time) nonceState {
	raw, ok := decodeNonce(nonce)
	if !ok || !hmac.Equal(raw[8:], n.mac(raw[:8], src)) {
		return nonceBad
	}
	issued := getMillis(raw[:6])
	if now.Sub(issued) > NonceTTL || issued.After(now.Add(time.Minute)) {
		return nonceStale
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.used[raw]; ok {
		return nonceUsed
	}
	return nonceFresh
}

// consume marks a nonce as used; it returns false if it already was
// (two requests racing with one nonce: only one wins) or the set is full.
func (n *nonces) consume(nonce string, now time.Time) bool {
	raw, ok := decodeNonce(nonce)
	if !ok {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// A nonce past its time is refused by check anyway, so it need not
	// be remembered. Uses come in time order, so the front expires first.
	for n.head < len(n.order) && now.After(n.order[n.head].until) {
		delete(n.used, n.order[n.head].raw)
		n.order[n.head] = usedNonce{}
		n.head++
	}
	if n.head > len(n.order)/2 && n.head > 64 {
		n.order = append(n.order[:0], n.order[n.head:]...)
		n.head = 0
	}
	if _, ok := n.used[raw]; ok || len(n.used) >= maxUsedNonces {
		return false
	}
	n.used[raw] = struct{}{}
	issued := getMillis(raw[:6])
	if issued.Before(now) {
		issued = now
	}
	n.order = append(n.order, usedNonce{raw, issued.Add(NonceTTL)})
	return true
}

// usedCount is the size of the used-nonce set.
func (n *nonces) usedCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.used)
}

// credentials is a parsed Authorization header (RFC 2617 §3.2.2).
type credentials struct {
	Username, Realm, Nonce, URI, Response, Algorithm, Qop, NC, CNonce, Opaque string
}

var errNotDigest = errors.New("not a Digest authorization")

// parseCredentials parses `Digest username="x", realm="y", ...`.
func parseCredentials(v string) (credentials, error) {
	var c credentials
	v = strings.TrimSpace(v)
	if len(v) < 7 || !strings.EqualFold(v[:6], "digest") || (v[6] != ' ' && v[6] != '\t') {
		return c, errNotDigest
	}
	v = v[7:]
	for len(v) > 0 {
		v = strings.TrimLeft(v, " \t,")
		if v == "" {
			break
		}
		eq := strings.IndexByte(v, '=')
		if eq < 0 {
			return c, errors.New("digest: parameter without '='")
		}
		key := strings.ToLower(strings.TrimSpace(v[:eq]))
		v = strings.TrimLeft(v[eq+1:], " \t")
		var val string
		if strings.HasPrefix(v, `"`) {
			end := 1
			var b strings.Builder
			for end < len(v) && v[end] != '"' {
				if v[end] == '\\' && end+1 < len(v) {
					end++
				}
				b.WriteByte(v[end])
				end++
			}
			if end >= len(v) {
				return c, errors.New("digest: unterminated quoted string")
			}
			val, v = b.String(), v[end+1:]
		} else {
			end := strings.IndexByte(v, ',')
			if end < 0 {
				end = len(v)
			}
			val, v = strings.TrimSpace(v[:end]), v[end:]
		}
		switch key {
		case "username":
			c.Username = val
		case "realm":
			c.Realm = val
		case "nonce":
			c.Nonce = val
		case "uri":
			c.URI = val
		case "response":
			c.Response = strings.ToLower(val)
		case "algorithm":
			c.Algorithm = val
		case "qop":
			c.Qop = val
		case "nc":
			c.NC = val
		case "cnonce":
			c.CNonce = val
		case "opaque":
			c.Opaque = val
		}
	}
	if c.Username == "" || c.Nonce == "" || c.Response == "" || c.URI == "" {
		return c, errors.New("digest: missing username, nonce, uri or response")
	}
	return c, nil
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// digestResponse computes the expected response (RFC 2617 §3.2.2.1). ha1
// is MD5(user:realm:secret), what md5secret= holds.
func digestResponse(ha1, method string, c credentials) string {
	ha2 := md5hex(method + ":" + c.URI)
	if c.Qop == "auth" {
		return md5hex(ha1 + ":" + c.Nonce + ":" + c.NC + ":" + c.CNonce + ":auth:" + ha2)
	}
	return md5hex(ha1 + ":" + c.Nonce + ":" + ha2)
}

// challenge is the WWW-Authenticate value chan_sip sends (no qop).
func challenge(realm, nonce string, stale bool) string {
	s := `Digest algorithm=MD5, realm="` + realm + `", nonce="` + nonce + `"`
	if stale {
		s += ", stale=true"
	}
	return s
}
