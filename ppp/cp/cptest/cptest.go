// Package cptest holds test helpers shared by the control protocols'
// option codecs (lcp, ipcp).
package cptest

import (
	"bytes"
	"testing"

	"github.com/isp-box/isp-box/ppp/cp"
)

// Encoder is a decoded option: lcp.Option, ipcp.Option.
type Encoder interface{ Encode() cp.Option }

// FuzzRoundTrip fuzzes decode: every option that decodes must encode back
// to the same octets, so that what a session sends of a peer's option
// (a Nak's suggestion, a Reject) is what the peer sent. Each seed is the
// option's Type octet followed by its Data.
func FuzzRoundTrip[T Encoder](f *testing.F, decode func(cp.Option) (T, error), seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s[0], s[1:])
	}
	f.Fuzz(func(t *testing.T, typ uint8, data []byte) {
		if len(data) > 253 {
			return
		}
		in := cp.Option{Type: typ, Data: data}
		d, err := decode(in)
		if err != nil {
			return
		}
		out := d.Encode()
		if out.Type != in.Type || !bytes.Equal(out.Data, in.Data) {
			t.Fatalf("round trip %d % x -> %d % x", in.Type, in.Data, out.Type, out.Data)
		}
	})
}
