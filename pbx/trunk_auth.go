package pbx

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// digestChallenge is one WWW-Authenticate / Proxy-Authenticate challenge
// (RFC 3261 §22.4, RFC 2617 §3.2.1, RFC 7616 §3.3).
type digestChallenge struct {
	Realm, Nonce, Opaque string
	Algorithm            string // MD5, MD5-sess, SHA-256, SHA-256-sess
	QOP                  []string
	Stale                bool
}

var errChallengeNotDigest = errors.New("pbx: challenge is not Digest")

// parseChallenge reads `Digest realm="x", nonce="y", ...`. Unknown
// parameters are skipped (RFC 7616 §3.3: "MUST ignore").
func parseChallenge(v string) (digestChallenge, error) {
	var c digestChallenge
	scheme, rest, _ := strings.Cut(strings.TrimSpace(v), " ")
	if !strings.EqualFold(scheme, "Digest") {
		return c, errChallengeNotDigest
	}
	for _, kv := range splitParams(rest) {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = strings.ReplaceAll(val[1:len(val)-1], `\"`, `"`)
		}
		switch k {
		case "realm":
			c.Realm = val
		case "nonce":
			c.Nonce = val
		case "opaque":
			c.Opaque = val
		case "algorithm":
			c.Algorithm = val
		case "qop":
			for _, q := range strings.Split(val, ",") {
				if q = strings.TrimSpace(q); q != "" {
					c.QOP = append(c.QOP, strings.ToLower(q))
				}
			}
		case "stale":
			c.Stale = strings.EqualFold(val, "true")
		}
	}
	if c.Nonce == "" {
		return c, fmt.Errorf("pbx: challenge without nonce: %q", v)
	}
	if c.Algorithm == "" {
		c.Algorithm = "MD5"
	}
	return c, nil
}

// splitParams splits at commas outside quotes.
func splitParams(s string) []string {
	var out []string
	inQ, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if inQ {
				i++
			}
		case '"':
			inQ = !inQ
		case ',':
			if !inQ {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// hashFor returns the algorithm's hash, or nil if we do not know it.
func hashFor(alg string) func() hash.Hash {
	switch strings.ToUpper(strings.TrimSuffix(strings.ToUpper(alg), "-SESS")) {
	case "MD5":
		return md5.New
	case "SHA-256":
		return sha256.New
	}
	return nil
}

// pickChallenge chooses among a response's challenges: SHA-256 before
// MD5 (RFC 7616 §3.7: the client uses the first it supports of the
// server's preference; RFC 8760 for SIP), skipping unknown algorithms.
func pickChallenge(values []string) (digestChallenge, error) {
	var best *digestChallenge
	var firstErr error
	for _, v := range values {
		c, err := parseChallenge(v)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if hashFor(c.Algorithm) == nil {
			continue
		}
		if best == nil || (strings.HasPrefix(strings.ToUpper(c.Algorithm), "SHA-256") && !strings.HasPrefix(strings.ToUpper(best.Algorithm), "SHA-256")) {
			cc := c
			best = &cc
		}
	}
	if best == nil {
		if firstErr == nil {
			firstErr = fmt.Errorf("pbx: no challenge with a supported algorithm in %q", values)
		}
		return digestChallenge{}, firstErr
	}
	return *best, nil
}

func hx(h func() hash.Hash, s string) string {
	d := h()
	d.Write([]byte(s))
	return hex.EncodeToString(d.Sum(nil))
}

// authorization is the credentials header value answering c (RFC 2617
// §3.2.2, RFC 7616 §3.4) for method on uri; nc counts uses of the nonce.
func (c digestChallenge) authorization(user, password, method, uri string, nc int) string {
	return c.authorizationWith(user, password, method, uri, nc, newCnonce())
}

func (c digestChallenge) authorizationWith(user, password, method, uri string, nc int, cnonce string) string {
	h := hashFor(c.Algorithm)
	ha1 := hx(h, user+":"+c.Realm+":"+password)
	if strings.HasSuffix(strings.ToUpper(c.Algorithm), "-SESS") {
		ha1 = hx(h, ha1+":"+c.Nonce+":"+cnonce)
	}
	ha2 := hx(h, method+":"+uri)
	qop := ""
	for _, q := range c.QOP {
		if q == "auth" {
			qop = q
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `Digest username="%s", realm="%s", nonce="%s", uri="%s"`, user, c.Realm, c.Nonce, uri)
	if qop != "" {
		ncs := fmt.Sprintf("%08x", nc)
		resp := hx(h, ha1+":"+c.Nonce+":"+ncs+":"+cnonce+":"+qop+":"+ha2)
		fmt.Fprintf(&b, `, response="%s", algorithm=%s, cnonce="%s", qop=%s, nc=%s`, resp, c.Algorithm, cnonce, qop, ncs)
	} else {
		fmt.Fprintf(&b, `, response="%s", algorithm=%s`, hx(h, ha1+":"+c.Nonce+":"+ha2), c.Algorithm)
	}
	if c.Opaque != "" {
		fmt.Fprintf(&b, `, opaque="%s"`, c.Opaque)
	}
	return b.String()
}

func newCnonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
