package radius

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Server is one RADIUS server and the secret it shares with us.
type Server struct {
	Addr   string // host:port
	Secret string
}

// Config is the [radius] section: servers in fail-over order and the
// NAS's own identity.
type Config struct {
	Auth []Server // authentication servers, tried in order
	Acct []Server // accounting servers, tried in order

	Timeout time.Duration // per try; 3 s
	Retries int           // retransmissions to one server before the next; 2

	NASIdentifier string     // NAS-Identifier; "" = the host name
	NASIPAddress  netip.Addr // NAS-IP-Address; zero = not sent

	// Order is where PPP credentials are checked: "file" (the [users]
	// section only, the default), "file radius" (users found in [users]
	// are checked there, the others by RADIUS) or "radius".
	Order []string

	// RequireMA refuses Access replies without a Message-Authenticator
	// (RFC 3579 §3.2; the Blast-RADIUS defence). Servers before
	// FreeRADIUS 3.2.5 do not send one; a present one is always checked.
	RequireMA bool

	// InterimInterval is the Interim-Update period when the server's
	// Access-Accept has no Acct-Interim-Interval; 0 = none.
	InterimInterval time.Duration

	File string // where [radius] starts, for messages
	Line int
}

// Enabled reports whether RADIUS authentication is on.
func (c Config) Enabled() bool {
	for _, o := range c.Order {
		if o == "radius" {
			return true
		}
	}
	return false
}

// UseFile reports whether the users file is consulted.
func (c Config) UseFile() bool {
	if len(c.Order) == 0 {
		return true
	}
	for _, o := range c.Order {
		if o == "file" {
			return true
		}
	}
	return false
}

// DefaultConfig is pppd radius plugin's radiusclient defaults.
func DefaultConfig() Config {
	return Config{Timeout: 3 * time.Second, Retries: 2}
}

// Client sends requests to the servers of a Config. Safe for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	curAuth int // index of the server that answered last (fail-over moves it)
	curAcct int
}

// NewClient returns a client for cfg; log may be nil.
func NewClient(cfg Config, log *slog.Logger) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: log}
}

// Config returns the client's config.
func (c *Client) Config() Config { return c.cfg }

// ErrNoServer is returned when no server gave a valid answer.
var ErrNoServer = errors.New("radius: no server answered")

// Exchange sends req (an Access-Request or Accounting-Request whose
// User-Password, if any, is in clear) to the servers of its kind, from
// the one that answered last, and returns the first valid reply.
// Access-Requests carry a Message-Authenticator and replies must too
// (RFC 3579 §3.2); a reply's is checked when present, and required with
// Config.RequireMA. The ID and authenticators are
// filled per server.
func (c *Client) Exchange(ctx context.Context, req *Packet) (*Packet, error) {
	servers, cur := c.cfg.Auth, &c.curAuth
	if req.Code == AccountingRequest {
		servers, cur = c.cfg.Acct, &c.curAcct
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("%w: none configured for %s", ErrNoServer, req.Code)
	}
	c.mu.Lock()
	start := *cur
	c.mu.Unlock()
	var errs []string
	for i := range servers {
		k := (start + i) % len(servers)
		srv := servers[k]
		reply, err := c.exchange(ctx, srv, req)
		if err == nil {
			c.mu.Lock()
			if *cur != k {
				c.log.Info("now using server", "server", srv.Addr, "kind", req.Code)
			}
			*cur = k
			c.mu.Unlock()
			return reply, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, srv.Addr+": "+err.Error())
		if i+1 < len(servers) {
			c.log.Warn("failing over to the next server", "from", srv.Addr, "to", servers[(k+1)%len(servers)].Addr, "err", err)
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoServer, strings.Join(errs, "; "))
}

// encode fills in ID and authenticators of req for srv.
func encode(req *Packet, srv Server) (wire []byte, reqAuth [authLen]byte, err error) {
	p := *req
	p.Attrs = make([]Attr, 0, len(req.Attrs)+1)
	var id [1]byte
	rand.Read(id[:])
	p.ID = id[0]
	switch p.Code {
	case AccessRequest:
		rand.Read(p.Authenticator[:])
		for _, a := range req.Attrs {
			if a.Type == AttrMessageAuthenticator {
				continue
			}
			if a.Type == AttrUserPassword {
				a.Value = hidePassword(a.Value, srv.Secret, p.Authenticator)
			}
			p.Attrs = append(p.Attrs, a)
		}
		// RFC 3579 §3.2 advises it first, which defeats Blast-RADIUS's
		// prefix collision.
		p.Attrs = append([]Attr{{Type: AttrMessageAuthenticator, Value: make([]byte, 16)}}, p.Attrs...)
		b, err := p.Marshal()
		if err != nil {
			return nil, reqAuth, err
		}
		copy(b[headerLen+2:], messageAuthenticator(b, srv.Secret))
		return b, p.Authenticator, nil
	default:
		// RFC 2866 §3: the Request Authenticator is the MD5 of the
		// packet with a zero authenticator, and the secret.
		p.Attrs = append(p.Attrs, req.Attrs...)
		p.Authenticator = [authLen]byte{}
		b, err := p.Marshal()
		if err != nil {
			return nil, reqAuth, err
		}
		ra := responseAuthenticator(b, srv.Secret)
		copy(b[4:20], ra[:])
		return b, ra, nil
	}
}

// exchange tries one server: Retries+1 sends, Timeout apart.
func (c *Client) exchange(ctx context.Context, srv Server, req *Packet) (*Packet, error) {
	wire, ra, err := encode(req, srv)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", srv.Addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, MaxLen)
	badAuth := 0
	for try := 0; try <= c.cfg.Retries; try++ {
		if _, err := conn.Write(wire); err != nil {
			// ICMP port unreachable from an earlier try shows here.
			c.log.Debug("send", "server", srv.Addr, "err", err)
		}
		deadline := time.Now().Add(c.cfg.Timeout)
		conn.SetReadDeadline(deadline)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				// Connection refused: nothing listens; wait out the
				// try so that retries keep their spacing.
				time.Sleep(time.Until(deadline))
				break
			}
			if n < headerLen || buf[1] != wire[1] {
				continue // not ours (a late reply to an earlier packet)
			}
			if err := VerifyReply(buf[:n], ra, srv.Secret, c.cfg.RequireMA && req.Code == AccessRequest); err != nil {
				badAuth++
				c.log.Error("reply fails the authenticator check; the shared secret differs from the server's",
					"server", srv.Addr, "kind", req.Code, "err", err)
				continue
			}
			reply, err := Parse(buf[:n])
			if err != nil {
				c.log.Warn("malformed reply", "server", srv.Addr, "err", err)
				continue
			}
			if !answers(req.Code, reply.Code) {
				c.log.Warn("unexpected reply", "server", srv.Addr, "code", reply.Code)
				continue
			}
			return reply, nil
		}
	}
	if badAuth > 0 {
		return nil, fmt.Errorf("%w (%d replies rejected)", ErrAuthenticator, badAuth)
	}
	return nil, fmt.Errorf("no answer to %d tries %v apart (server down, or it drops our requests: wrong shared secret or this NAS is not its client)",
		c.cfg.Retries+1, c.cfg.Timeout)
}

func answers(req, reply Code) bool {
	if req == AccountingRequest {
		return reply == AccountingResponse
	}
	return reply == AccessAccept || reply == AccessReject || reply == AccessChallenge
}
