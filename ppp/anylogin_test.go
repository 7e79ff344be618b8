package ppp_test

import (
	"errors"
	"net"
	"testing"
	"testing/synctest"

	"github.com/isp-box/isp-box/ppp"
	"github.com/isp-box/isp-box/ppp/ppptest"
)

// TestAnyLogin: the users file's any-login rule (a User with secret
// ppp.AnyLogin) accepts any name and password over PAP, CHAP-MD5 and
// MS-CHAPv1, as DreamPi does for the Dreamcast's fixed login; MS-CHAPv2
// needs the password to prove the server to the client, so it fails.
func TestAnyLogin(t *testing.T) {
	anyUsers := []ppp.User{{Name: "*", Server: "*", Secret: ppp.AnyLogin}}
	for _, tc := range []struct {
		proto ppp.AuthProto
		ok    bool
	}{
		{ppp.AuthPAP, true}, {ppp.AuthCHAP, true}, {ppp.AuthMSCHAP, true}, {ppp.AuthMSCHAPv2, false},
	} {
		t.Run(string(tc.proto), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := net.Pipe()
				srv := startServer(t, t.Context(), a, seedConfig(tc.proto), ppp.Options{Users: anyUsers, Network: ppptest.NewNetwork("192.168.32.1", "192.168.32.105")})
				c, err := ppp.Dial(t.Context(), b, ppp.ClientConfig{User: "dream", Password: "dreamcast", Auth: []ppp.AuthProto{tc.proto}}, testLog(t))
				if !tc.ok {
					if !errors.Is(err, ppp.ErrAuthFailed) {
						t.Fatalf("Dial: %v, want an authentication failure", err)
					}
					<-srv
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				if res := <-srv; res.rec.User != "dream" {
					t.Fatalf("record %+v", res.rec)
				}
			})
		})
	}
}
