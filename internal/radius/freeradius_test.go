package radius_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/isp-box/isp-box/internal/radius"
	"github.com/isp-box/isp-box/internal/radius/radiustest"
	"github.com/isp-box/isp-box/ppp/chap"
)

const users = `alice Cleartext-Password := "wonderland"
	Framed-IP-Address = 192.168.32.77,
	Session-Timeout = 30,
	Idle-Timeout = 600,
	Framed-MTU = 1400,
	Class = "gold",
	Acct-Interim-Interval = 60,
	MS-Primary-DNS-Server = 10.1.1.1,
	MS-Secondary-DNS-Server = 10.1.1.2
bob Auth-Type := Reject
	Reply-Message = "Bob, your account is overdue"
`

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func client(t *testing.T, srv *radiustest.Server, secret string, log *syncBuf) *radius.Client {
	var l *slog.Logger
	if log != nil {
		l = slog.New(slog.NewTextHandler(log, nil))
	}
	return radius.NewClient(radius.Config{
		Auth:          []radius.Server{{Addr: srv.AuthAddr(), Secret: secret}},
		Acct:          []radius.Server{{Addr: srv.AcctAddr(), Secret: secret}},
		Timeout:       2 * time.Second,
		Retries:       1,
		NASIdentifier: "test-nas",
		NASIPAddress:  netip.MustParseAddr("127.0.0.1"),
	}, l)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestFreeRADIUSMethods: each PPP method against the real server, with the
// right and a wrong password.
func TestFreeRADIUSMethods(t *testing.T) {
	srv := radiustest.Start(t, radiustest.Options{Users: users})
	c := client(t, srv, srv.Secret(), nil)
	ctx := context.Background()
	port := radius.Port{Number: 1, ID: "ttyS0", Type: radius.NASPortAsync, Calling: "5551234"}
	for _, m := range []struct {
		name string
		req  func(pw string) radius.AuthRequest
	}{
		{"pap", func(pw string) radius.AuthRequest {
			return radius.AuthRequest{Method: radius.PAP, User: "alice", Password: pw, Port: port}
		}},
		{"chap", func(pw string) radius.AuthRequest {
			ch := random(16)
			return radius.AuthRequest{Method: radius.CHAP, User: "alice", ID: 7, Challenge: ch,
				Response: chap.MD5Response(7, pw, ch), Port: port}
		}},
		{"mschap", func(pw string) radius.AuthRequest {
			ch := random(8)
			return radius.AuthRequest{Method: radius.MSCHAPv1, User: "alice", ID: 8, Challenge: ch,
				Response: chap.MSv1Response(ch, pw), Port: port}
		}},
		{"mschap-v2", func(pw string) radius.AuthRequest {
			ch := random(16)
			return radius.AuthRequest{Method: radius.MSCHAPv2, User: "alice", ID: 9, Challenge: ch,
				Response: chap.MSv2Response(ch, random(16), "alice", pw), Port: port}
		}},
	} {
		t.Run(m.name, func(t *testing.T) {
			req := m.req("wonderland")
			res, err := c.Authenticate(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Accept {
				t.Fatalf("rejected: %+v", res)
			}
			if res.FramedIP != netip.MustParseAddr("192.168.32.77") || res.SessionTimeout != 30*time.Second ||
				res.IdleTimeout != 600*time.Second || res.FramedMTU != 1400 || len(res.Class) != 1 ||
				string(res.Class[0]) != "gold" || res.Interim != time.Minute || len(res.DNS) != 2 {
				t.Errorf("reply attributes: %+v", res)
			}
			if m.name == "mschap-v2" {
				want := chap.AuthenticatorResponse("wonderland", req.Response[24:48], req.Response[:16], req.Challenge, "alice")
				if res.MSCHAP2Success != want {
					t.Errorf("MS-CHAP2-Success %q, want %q", res.MSCHAP2Success, want)
				}
			}
			bad := m.req("wrong")
			r2, err := c.Authenticate(ctx, bad)
			if err != nil {
				t.Fatal(err)
			}
			if r2.Accept {
				t.Fatal("wrong password accepted")
			}
		})
	}
	t.Run("reply-message", func(t *testing.T) {
		res, err := c.Authenticate(ctx, radius.AuthRequest{Method: radius.PAP, User: "bob", Password: "builder", Port: port})
		if err != nil {
			t.Fatal(err)
		}
		if res.Accept || !strings.Contains(res.ReplyMessage, "overdue") {
			t.Errorf("%+v", res)
		}
	})
}

// TestFreeRADIUSWrongSecret: FreeRADIUS drops requests signed with another
// secret; the client says so rather than hang or claim a reject.
func TestFreeRADIUSWrongSecret(t *testing.T) {
	srv := radiustest.Start(t, radiustest.Options{Users: users})
	log := &syncBuf{}
	c := client(t, srv, "not-the-secret", log)
	_, err := c.Authenticate(context.Background(), radius.AuthRequest{Method: radius.PAP, User: "alice", Password: "wonderland"})
	if !errors.Is(err, radius.ErrNoServer) || !strings.Contains(err.Error(), "shared secret") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(srv.Log(), "Shared secret is incorrect") {
		t.Logf("server log does not say why:\n%s", srv.LogTail(20))
	}
}

// TestFailOver: the first server is dead (nothing listens), the second
// answers, and the client stays with the second afterwards.
func TestFailOver(t *testing.T) {
	srv := radiustest.Start(t, radiustest.Options{Users: users})
	log := &syncBuf{}
	c := radius.NewClient(radius.Config{
		Auth:    []radius.Server{{Addr: "127.0.0.1:9", Secret: "x"}, {Addr: srv.AuthAddr(), Secret: srv.Secret()}},
		Acct:    []radius.Server{{Addr: "127.0.0.1:9", Secret: "x"}, {Addr: srv.AcctAddr(), Secret: srv.Secret()}},
		Timeout: 300 * time.Millisecond, Retries: 1, NASIdentifier: "fo",
	}, slog.New(slog.NewTextHandler(log, nil)))
	for i := range 2 {
		res, err := c.Authenticate(context.Background(), radius.AuthRequest{Method: radius.PAP, User: "alice", Password: "wonderland"})
		if err != nil || !res.Accept {
			t.Fatalf("try %d: %v %+v", i, err, res)
		}
	}
	// One fail-over: the second request starts at the server that answered.
	if n := strings.Count(log.String(), "failing over"); n != 1 {
		t.Errorf("%d fail-overs logged, want 1:\n%s", n, log.String())
	}
	if err := c.Account(context.Background(), radius.AcctRecord{Status: radius.AcctStart, SessionID: "s1", User: "alice"}, 0); err != nil {
		t.Fatal(err)
	}
	recs := srv.Accounting()
	if len(recs) != 1 || recs[0]["Acct-Session-Id"] != "s1" || recs[0]["NAS-Identifier"] != "fo" {
		t.Errorf("detail: %v", recs)
	}
}
