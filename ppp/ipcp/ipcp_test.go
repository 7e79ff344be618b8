package ipcp

import (
	"net/netip"
	"testing"

	"github.com/isp-box/isp-box/ppp/cp"
	"github.com/isp-box/isp-box/ppp/cp/cptest"
)

// A Microsoft client's IPCP request: <compress VJ 0f 00> <addr 0.0.0.0>
// <ms-dns1 0.0.0.0> <ms-wins 0.0.0.0> <ms-dns3 0.0.0.0> <ms-wins 0.0.0.0>.
func TestDecodeWindowsRequest(t *testing.T) {
	b := []byte{2, 6, 0, 0x2d, 0x0f, 0, 3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0, 130, 6, 0, 0, 0, 0, 131, 6, 0, 0, 0, 0, 132, 6, 0, 0, 0, 0}
	opts, err := cp.ParseOptions(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Decode(opts[0])
	if err != nil || c.(Compression).MaxSlot != 15 || c.(Compression).CompSlot != 0 {
		t.Fatalf("vj %#v %v", c, err)
	}
	a, _ := Decode(opts[2])
	if a != (Address{Type: OptDNS1, Addr: netip.MustParseAddr("0.0.0.0")}) {
		t.Fatalf("dns %#v", a)
	}
}

func FuzzOption(f *testing.F) {
	cptest.FuzzRoundTrip(f, Decode, [][]byte{{2, 0, 0x2d, 15, 1}, {2, 0, 0x2d}, {2, 0, 0x37}, {3, 192, 168, 32, 105}, {129, 8, 8, 8, 8}, {1, 1, 2, 3, 4, 5, 6, 7, 8}, {200, 1}})
}
