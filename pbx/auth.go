package pbx

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"
)

// NonceTTL is how long a nonce we issued may be used.
const NonceTTL = 30 * time.Second

// nonces issues and checks digest nonces: "<16 hex time+random><16 hex mac>".
type nonces struct {
	key [32]byte
	mu  sync.Mutex
	// used holds nonces already accepted once, until they expire anyway.
	used map[string]time.Time
}

func newNonces() *nonces {
	n := &nonces{used: map[string]time.Time{}}
	if _, err := rand.Read(n.key[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func (n *nonces) mac(b []byte) []byte {
	m := hmac.New(sha256.New, n.key[:])
	m.Write(b)
	return m.Sum(nil)[:8]
}

// issue returns a fresh nonce.
func (n *nonces) issue(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:]) + hex.EncodeToString(n.mac(b[:]))
}

type nonceState uint8

const (
	nonceBad   nonceState = iota // not ours
	nonceFresh                   // ours, in time, never used
	nonceStale                   // ours but expired or already used
)

// check classifies a nonce without consuming it.
func (n *nonces) check(nonce string, now time.Time) nonceState {
	raw, err := hex.DecodeString(nonce)
	if err != nil || len(raw) != 24 || !hmac.Equal(raw[16:], n.mac(raw[:16])) {
		return nonceBad
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	if now.Sub(issued) > NonceTTL || issued.After(now.Add(time.Minute)) {
		return nonceStale
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.used[nonce]; ok {
		return nonceStale
	}
	return nonceFresh
}

// consume marks a nonce as used; it returns false if it already was
// (two requests racing with one nonce: only one wins).
func (n *nonces) consume(nonce string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.used[nonce]; ok {
		return false
	}
	n.used[nonce] = now
	if len(n.used) > 4096 {
		for k, t := range n.used {
			if now.Sub(t) > NonceTTL+time.Minute {
				delete(n.used, k)
			}
		}
	}
	return true
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
