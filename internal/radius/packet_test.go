package radius

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 2865 §7.1: user nemo, password arctangent, secret xyzzy5461.
const (
	rfcSecret  = "xyzzy5461"
	rfcRequest = `01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8
01 10 05 06 00 00 00 03`
	rfcAccept = `02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
0e 06 c0 a8 01 03`
)

func TestRFC2865Example(t *testing.T) {
	req, err := Parse(unhex(t, rfcRequest))
	if err != nil {
		t.Fatal(err)
	}
	if req.Code != AccessRequest || len(req.Attrs) != 4 {
		t.Fatalf("parsed %+v", req)
	}
	if u, _ := req.Get(AttrUserName); string(u) != "nemo" {
		t.Errorf("User-Name %q", u)
	}
	hidden, _ := req.Get(AttrUserPassword)
	if got := hidePassword([]byte("arctangent"), rfcSecret, req.Authenticator); !bytes.Equal(got, hidden) {
		t.Errorf("hidden password %x, want %x", got, hidden)
	}
	if got := unhidePassword(hidden, rfcSecret, req.Authenticator); string(got) != "arctangent" {
		t.Errorf("unhidden %q", got)
	}
	b, err := req.Marshal()
	if err != nil || !bytes.Equal(b, unhex(t, rfcRequest)) {
		t.Errorf("round trip: %x %v", b, err)
	}
	acc := unhex(t, rfcAccept)
	if err := VerifyReply(acc, req.Authenticator, rfcSecret, false); err != nil {
		t.Errorf("accept: %v", err)
	}
	if err := VerifyReply(acc, req.Authenticator, "wrong", false); !errors.Is(err, ErrAuthenticator) {
		t.Errorf("wrong secret: %v", err)
	}
	if err := VerifyReply(acc, req.Authenticator, rfcSecret, true); !errors.Is(err, ErrAuthenticator) {
		t.Errorf("missing Message-Authenticator accepted: %v", err)
	}
}

// TestMessageAuthenticator checks encode's HMAC and VerifyReply against a
// reply signed the way RFC 2869 §5.14 says a server signs it.
func TestMessageAuthenticator(t *testing.T) {
	srv := Server{Addr: "x", Secret: "s3cret"}
	req := &Packet{Code: AccessRequest}
	req.AddString(AttrUserName, "bob")
	req.AddString(AttrUserPassword, "pw")
	wire, ra, err := encode(req, srv)
	if err != nil {
		t.Fatal(err)
	}
	off := findAttr(wire, AttrMessageAuthenticator)
	if off != headerLen+2 {
		t.Fatalf("Message-Authenticator at %d, want first", off)
	}
	c := bytes.Clone(wire)
	clear(c[off : off+16])
	if !bytes.Equal(messageAuthenticator(c, srv.Secret), wire[off:off+16]) {
		t.Error("request Message-Authenticator wrong")
	}
	p, _ := Parse(wire)
	if pw, _ := p.Get(AttrUserPassword); string(unhidePassword(pw, srv.Secret, ra)) != "pw" {
		t.Error("password not recoverable")
	}
	// The server's reply: MA over the packet with the request's
	// authenticator, then the Response Authenticator over that.
	reply := &Packet{Code: AccessAccept, ID: p.ID, Authenticator: ra}
	reply.Add(AttrMessageAuthenticator, make([]byte, 16))
	reply.AddUint32(AttrSessionTimeout, 60)
	rb, _ := reply.Marshal()
	copy(rb[headerLen+2:], messageAuthenticator(rb, srv.Secret))
	rsp := responseAuthenticator(rb, srv.Secret)
	copy(rb[4:20], rsp[:])
	if err := VerifyReply(rb, ra, srv.Secret, true); err != nil {
		t.Fatal(err)
	}
	rb[len(rb)-1] ^= 1 // breaks both
	if err := VerifyReply(rb, ra, srv.Secret, true); !errors.Is(err, ErrAuthenticator) {
		t.Errorf("tampered reply: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    string
	}{
		{"short", "01 00 00 14"},
		{"length below header", "01 00 00 10 " + strings.Repeat("00 ", 16)},
		{"length beyond data", "01 00 00 20 " + strings.Repeat("00 ", 16)},
		{"attr length 1", "01 00 00 16 " + strings.Repeat("00 ", 16) + "01 01"},
		{"attr past end", "01 00 00 17 " + strings.Repeat("00 ", 16) + "01 05 00"},
		{"truncated attr header", "01 00 00 15 " + strings.Repeat("00 ", 16) + "01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(unhex(t, tc.b)); err == nil {
				t.Error("parsed")
			}
		})
	}
}

func TestVSA(t *testing.T) {
	p := &Packet{Code: AccessAccept}
	p.AddVSA(VendorMicrosoft, MSCHAP2Success, []byte("\x01S=ABC"))
	p.AddVSA(VendorMicrosoft, MSPrimaryDNSServer, []byte{10, 0, 0, 53})
	b, _ := p.Marshal()
	q, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	r := parseAuthReply(q)
	if !r.Accept || r.MSCHAP2Success != "S=ABC" || len(r.DNS) != 1 || r.DNS[0].String() != "10.0.0.53" {
		t.Errorf("%+v", r)
	}
}

func TestAcctRecordRoundTrip(t *testing.T) {
	c := NewClient(Config{NASIdentifier: "box1"}, nil)
	rec := AcctRecord{Status: AcctStop, SessionID: "abc", User: "u", InOctets: 5<<32 + 7, OutOctets: 9,
		Terminate: TermLostCarrier, Port: Port{Number: 2, ID: "ttyS1", Type: NASPortAsync}}
	b, err := c.EncodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Uint32(AttrAcctInputGigawords); v != 5 {
		t.Errorf("gigawords %d", v)
	}
	if v, _ := p.Uint32(AttrAcctInputOctets); v != 7 {
		t.Errorf("octets %d", v)
	}
	if v, _ := p.Get(AttrNASIdentifier); string(v) != "box1" {
		t.Errorf("NAS-Identifier %q", v)
	}
	if v, _ := p.Uint32(AttrAcctTerminateCause); v != TermLostCarrier {
		t.Errorf("cause %d", v)
	}
}

// FuzzParse: whatever parses marshals back to the same octets (up to the
// Length field) and parses again the same.
func FuzzParse(f *testing.F) {
	f.Add(unhex(f, rfcRequest))
	f.Add(unhex(f, rfcAccept))
	p := &Packet{Code: AccessAccept}
	p.AddVSA(VendorMicrosoft, MSCHAP2Success, []byte("\x01S=ABC"))
	b, _ := p.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		parseAuthReply(p) // must not panic on any attribute content
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("marshal of a parsed packet: %v", err)
		}
		n := int(b[2])<<8 | int(b[3])
		if !bytes.Equal(out, b[:n]) {
			t.Fatalf("round trip differs:\n%x\n%x", out, b[:n])
		}
		VerifyReply(b, [16]byte{}, "s", true)
	})
}
