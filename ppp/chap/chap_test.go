package chap

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// RFC 1320 §A.5 test suite.
func TestMD4(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "31d6cfe0d16ae931b73c59d7e0c089c0",
		"a":                          "bde52cb31de33e46245e05fbdbd6fb24",
		"abc":                        "a448017aaf21d8525fc10ae87aa6729d",
		"message digest":             "d9130a8164549fe818874806e1c7014b",
		"abcdefghijklmnopqrstuvwxyz": "d79e1c308aa5bbcdeea8ed63df412da9",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789":                   "043f8582f241db351ce627e153e7f0e4",
		"12345678901234567890123456789012345678901234567890123456789012345678901234567890": "e33b4ddc9c38f2199c3e7b164fcc0536",
	} {
		got := md4([]byte(in))
		if hex.EncodeToString(got[:]) != want {
			t.Errorf("md4(%q) = %x, want %s", in, got, want)
		}
	}
}

// RFC 2759 §9.2's worked example.
func TestMSCHAPv2Vectors(t *testing.T) {
	auth := unhex("5B5D7C7D7B3F2F3E3C2C602132262628")
	peer := unhex("21402324255E262A28295F2B3A337C7E")
	if got := ChallengeHash(peer, auth, "User"); !bytes.Equal(got, unhex("D02E4386BCE91226")) {
		t.Errorf("ChallengeHash %X", got)
	}
	ph := NTPasswordHash("clientPass")
	if !bytes.Equal(ph[:], unhex("44EBBA8D5312B8D611474411F56989AE")) {
		t.Errorf("NTPasswordHash %X", ph)
	}
	nt := MSv2NTResponse(auth, peer, "User", "clientPass")
	if !bytes.Equal(nt[:], unhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")) {
		t.Errorf("NT-Response %X", nt)
	}
	if got := AuthenticatorResponse("clientPass", nt[:], peer, auth, "User"); got != "S=407A5589115FD0D6209F510FE9C04566932CDA56" {
		t.Errorf("AuthenticatorResponse %s", got)
	}
	// the domain is not hashed
	if got := ChallengeHash(peer, auth, `DOMAIN\User`); !bytes.Equal(got, unhex("D02E4386BCE91226")) {
		t.Errorf("ChallengeHash with domain %X", got)
	}
	v := MSv2Response(auth, peer, "User", "clientPass")
	ok, s := Verify(MSCHAPv2, 7, auth, v, "User", "clientPass")
	if !ok || s != "S=407A5589115FD0D6209F510FE9C04566932CDA56" {
		t.Errorf("Verify %v %s", ok, s)
	}
	if ok, _ := Verify(MSCHAPv2, 7, auth, v, "User", "wrong"); ok {
		t.Error("wrong password verified")
	}
}

// RFC 2433 §B.2 (MS-CHAPv1 example): challenge 102DB5DF085D3041,
// password "MyPw" gives NT response 4E9D3C8F9CFD385D5BF4D3246791956CA4C351AB409A3D61.
func TestMSCHAPv1Vector(t *testing.T) {
	ch := unhex("102DB5DF085D3041")
	ph := NTPasswordHash("MyPw")
	if !bytes.Equal(ph[:], unhex("FC156AF7EDCD6C0EDDE3337D427F4EAC")) {
		t.Errorf("NTPasswordHash %X", ph)
	}
	v := MSv1Response(ch, "MyPw")
	if !bytes.Equal(v[24:48], unhex("4E9D3C8F9CFD385D5BF4D3246791956CA4C351AB409A3D61")) {
		t.Errorf("NT response %X", v[24:48])
	}
	if ok, _ := Verify(MSCHAPv1, 1, ch, v, "u", "MyPw"); !ok {
		t.Error("verify failed")
	}
}

// RFC 1994 has no vector; this one is MD5(0x01 ‖ "MyPw" ‖ 102DB5DF085D3041).
func TestMD5(t *testing.T) {
	ch := unhex("102DB5DF085D3041")
	r := MD5Response(1, "MyPw", ch)
	if ok, _ := Verify(MD5, 1, ch, r, "", "MyPw"); !ok {
		t.Fatal("verify")
	}
	if ok, _ := Verify(MD5, 2, ch, r, "", "MyPw"); ok {
		t.Fatal("identifier not covered")
	}
}

func FuzzValue(f *testing.F) {
	f.Add([]byte("\x10abcdefghijklmnopisp-box"))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v Value
		if v.Unmarshal(b) != nil {
			return
		}
		out, err := v.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip % x -> % x (%v)", b, out, err)
		}
	})
}

// Fuzzer find, kept as a named case: a 255-octet value.
func TestValue255(t *testing.T) {
	var v Value
	if err := v.Unmarshal(append([]byte{0xff}, make([]byte, 255)...)); err != nil || len(v.Value) != 255 || v.Name != "" {
		t.Fatalf("%v %d %q", err, len(v.Value), v.Name)
	}
}
