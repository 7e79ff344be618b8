package lcp

import (
	"testing"

	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/cp/cptest"
)

// A Microsoft client's first LCP request, as pppd logs it: <asyncmap 0x0>
// <magic> <pcomp> <accomp> <callback CBCP> <mrru 1614> <endpoint ...>.
func TestDecodeWindowsRequest(t *testing.T) {
	b := []byte{2, 6, 0, 0, 0, 0, 5, 6, 0x12, 0x34, 0x56, 0x78, 7, 2, 8, 2, 13, 3, 6,
		17, 4, 0x06, 0x4e, 19, 9, 1, 'M', 'S', 'W', 'I', 'N', '9'}
	opts, err := cp.ParseOptions(b)
	if err != nil {
		t.Fatal(err)
	}
	var got []Option
	for _, o := range opts {
		d, err := Decode(o)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	if got[0] != ACCM(0) || got[1] != Magic(0x12345678) || got[2] != (PFC{}) || got[3] != (ACFC{}) {
		t.Fatalf("decoded %#v", got)
	}
	if cb, ok := got[4].(Callback); !ok || cb.Operation != CallbackCBCP {
		t.Fatalf("callback %#v", got[4])
	}
	if got[5] != MRRU(1614) {
		t.Fatalf("mrru %#v", got[5])
	}
	if r, ok := got[6].(Raw); !ok || r.Type != OptEndpoint {
		t.Fatalf("endpoint %#v", got[6])
	}
}

// FuzzOption: every option that decodes encodes back to the same octets.
func FuzzOption(f *testing.F) {
	cptest.FuzzRoundTrip(f, Decode, [][]byte{{1, 5, 220}, {2, 0, 0, 0, 0}, {3, 0xc2, 0x23, 0x81}, {3, 0xc0, 0x23}, {5, 1, 2, 3, 4}, {7}, {8}, {13, 6}, {17, 6, 0x4e}, {19, 1, 2}})
}
