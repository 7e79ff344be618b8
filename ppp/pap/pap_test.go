package pap

import (
	"bytes"
	"testing"
)

func TestRequest(t *testing.T) {
	r := Request{PeerID: "dial", Password: "dial"}
	b, err := r.Marshal()
	if err != nil || !bytes.Equal(b, []byte("\x04dial\x04dial")) {
		t.Fatalf("% x %v", b, err)
	}
	var got Request
	if err := got.Unmarshal(b); err != nil || got != r {
		t.Fatalf("%+v %v", got, err)
	}
	if err := got.Unmarshal([]byte{4, 'd'}); err == nil {
		t.Fatal("short request accepted")
	}
}

func FuzzRequest(f *testing.F) {
	f.Add([]byte("\x04dial\x04dial"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if r.Unmarshal(b) != nil {
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, out) {
			t.Fatalf("round trip % x -> % x", b, out)
		}
		m, err := ParseMessage(b)
		if err == nil && len(b) > 0 && !bytes.HasPrefix(b, m.Marshal()) {
			t.Fatalf("message round trip % x", b)
		}
	})
}

// Fuzzer finds, kept as named cases.
func TestFuzzRegressions(t *testing.T) {
	var r Request
	// a 255-octet peer-id: 1+b[0] must not wrap as a byte
	if err := r.Unmarshal(append([]byte{0xff}, make([]byte, 256)...)); err != nil || len(r.PeerID) != 255 {
		t.Fatalf("%v %d", err, len(r.PeerID))
	}
	if _, err := ParseMessage(append([]byte{0xff}, make([]byte, 10)...)); err == nil {
		t.Fatal("short message accepted")
	}
}
