// Package sipflood floods a SIP server on loopback the way a scanner or a
// password guesser on the internet does, bounded in count and time, and
// plays a well-behaved ATA line (register, call, answer) to check that the
// real traffic still gets through meanwhile.
//
// The flood comes from many source addresses: every 127.0.0.0/8 address
// is the local host on Linux, so Sources sockets bound to 127.S.x.y are
// that many distinct hosts to the server. Kinds:
//
//	invite    an unauthenticated INVITE with SDP (a scanner's call attempt)
//	register  a REGISTER, then for its 401 a second one with a wrong
//	          password (a guess)
//	options   an OPTIONS (a scanner's ping)
//
// Only loopback targets are accepted.
package sipflood

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one flood.
type Config struct {
	Target   netip.AddrPort
	Sources  int           // distinct source addresses; default 64, at most 4096
	Base     netip.Addr    // first source address; default 127.9.0.1
	Duration time.Duration // default 10 s
	Rate     int           // requests/s in all; 0 = as fast as the sockets take them
	Max      int           // requests in all; 0 = no bound but Duration
	Kinds    []string      // default invite, register, options
	User     string        // the peer name guessed at; default "pap2t-client"
	Realm    string        // default "asterisk"
}

// Result is what a flood sent and got back.
type Result struct {
	Sent, BytesOut     uint64 // requests (guesses included)
	Guesses            uint64 // wrong-password REGISTERs sent in answer to a 401
	Answers, BytesIn   uint64 // responses received
	ByCode             map[int]uint64
	Elapsed            time.Duration
	FirstError, Errors string
}

// Run floods until cfg.Duration, cfg.Max or ctx, whichever ends first.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if !cfg.Target.Addr().IsLoopback() {
		return Result{}, fmt.Errorf("sipflood: %s is not a loopback address; floods stay on this host", cfg.Target)
	}
	if cfg.Sources <= 0 {
		cfg.Sources = 64
	}
	cfg.Sources = min(cfg.Sources, 4096)
	if !cfg.Base.IsValid() {
		cfg.Base = netip.MustParseAddr("127.9.0.1")
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{"invite", "register", "options"}
	}
	for _, k := range cfg.Kinds {
		switch k {
		case "invite", "register", "options":
		default:
			return Result{}, fmt.Errorf("sipflood: unknown kind %q (invite, register, options)", k)
		}
	}
	if cfg.User == "" {
		cfg.User = "pap2t-client"
	}
	if cfg.Realm == "" {
		cfg.Realm = "asterisk"
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var st stats
	st.codes = map[int]uint64{}
	var conns []*net.UDPConn
	a := cfg.Base
	for range cfg.Sources {
		if !a.IsLoopback() {
			break
		}
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return Result{}, fmt.Errorf("sipflood: %w", err)
		}
		conns = append(conns, c)
		a = a.Next()
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); st.read(c, cfg) }()
	}
	start := time.Now()
	dst := net.UDPAddrFromAddrPort(cfg.Target)
	var seq uint64
	pace := time.Duration(0)
	if cfg.Rate > 0 {
		pace = time.Second / time.Duration(cfg.Rate)
	}
	next := time.Now()
loop:
	for {
		if ctx.Err() != nil || (cfg.Max > 0 && seq >= uint64(cfg.Max)) {
			break
		}
		c := conns[seq%uint64(len(conns))]
		kind := cfg.Kinds[(seq/uint64(len(conns)))%uint64(len(cfg.Kinds))]
		msg := request(kind, cfg, c.LocalAddr().(*net.UDPAddr).AddrPort(), seq, "")
		if _, err := c.WriteToUDP(msg, dst); err != nil {
			st.err(err)
			if errors.Is(err, net.ErrClosed) {
				break loop
			}
		} else {
			st.sent.Add(1)
			st.out.Add(uint64(len(msg)))
		}
		seq++
		if pace > 0 {
			next = next.Add(pace)
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					break loop
				case <-time.After(d):
				}
			}
		}
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond) // the last answers
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	r := Result{Sent: st.sent.Load(), BytesOut: st.out.Load(), Guesses: st.guesses.Load(), Answers: st.answers.Load(),
		BytesIn: st.in.Load(), Elapsed: elapsed}
	st.mu.Lock()
	r.ByCode, r.FirstError = st.codes, st.first
	if st.nerr > 0 {
		r.Errors = fmt.Sprintf("%d send errors", st.nerr)
	}
	st.mu.Unlock()
	return r, nil
}

type stats struct {
	sent, out, guesses, answers, in atomic.Uint64
	mu                              sync.Mutex
	codes                           map[int]uint64
	first                           string
	nerr                            int
}

func (st *stats) err(err error) {
	st.mu.Lock()
	if st.first == "" {
		st.first = err.Error()
	}
	st.nerr++
	st.mu.Unlock()
}

var nonceRE = regexp.MustCompile(`nonce="([^"]+)"`)

// read counts what comes back to c and answers each 401 to a REGISTER with
// a wrong password: one guess.
func (st *stats) read(c *net.UDPConn, cfg Config) {
	buf := make([]byte, 65535)
	dst := net.UDPAddrFromAddrPort(cfg.Target)
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		st.answers.Add(1)
		st.in.Add(uint64(n))
		msg := string(buf[:n])
		code := 0
		if strings.HasPrefix(msg, "SIP/2.0 ") && len(msg) >= 11 {
			fmt.Sscanf(msg[8:11], "%d", &code)
		}
		st.mu.Lock()
		st.codes[code]++
		st.mu.Unlock()
		if code == 401 && strings.Contains(msg, " REGISTER\r\n") {
			if m := nonceRE.FindStringSubmatch(msg); m != nil {
				g := request("register", cfg, c.LocalAddr().(*net.UDPAddr).AddrPort(), rand.Uint64(), m[1])
				if _, err := c.WriteToUDP(g, dst); err == nil {
					st.guesses.Add(1)
					st.sent.Add(1)
					st.out.Add(uint64(len(g)))
				}
			}
		}
	}
}

const floodSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"

// request is one flood request from src; nonce set: a REGISTER with a
// wrong password for it.
func request(kind string, cfg Config, src netip.AddrPort, seq uint64, nonce string) []byte {
	box := cfg.Target.String()
	br := fmt.Sprintf("z9hG4bK%016x", rand.Uint64())
	common := fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=%s;rport\r\nMax-Forwards: 70\r\nUser-Agent: friendly-scanner\r\n", src, br)
	switch kind {
	case "invite":
		return fmt.Appendf(nil, "INVITE sip:100%d@%s SIP/2.0\r\n%sFrom: <sip:%d@%s>;tag=%x\r\nTo: <sip:100%d@%s>\r\n"+
			"Call-ID: fl%x@%s\r\nCSeq: 1 INVITE\r\nContact: <sip:%d@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
			seq%1000, box, common, seq%1000, box, rand.Uint32(), seq%1000, box, rand.Uint64(), src.Addr(), seq%1000, src, len(floodSDP), floodSDP)
	case "options":
		return fmt.Appendf(nil, "OPTIONS sip:100@%s SIP/2.0\r\n%sFrom: <sip:100@%s>;tag=%x\r\nTo: <sip:100@%s>\r\n"+
			"Call-ID: fl%x@%s\r\nCSeq: 1 OPTIONS\r\nContact: <sip:100@%s>\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n",
			box, common, box, rand.Uint32(), box, rand.Uint64(), src.Addr(), src)
	}
	auth := ""
	cseq := 1
	if nonce != "" {
		uri := "sip:" + box
		ha1 := md5hex(cfg.User + ":" + cfg.Realm + ":guess" + fmt.Sprint(seq%100000))
		resp := md5hex(ha1 + ":" + nonce + ":" + md5hex("REGISTER:"+uri))
		auth = fmt.Sprintf("Authorization: Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", algorithm=MD5\r\n",
			cfg.User, cfg.Realm, nonce, uri, resp)
		cseq = 2
	}
	return fmt.Appendf(nil, "REGISTER sip:%s SIP/2.0\r\n%sFrom: <sip:%s@%s>;tag=%x\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: fl%x@%s\r\nCSeq: %d REGISTER\r\nContact: <sip:%s@%s>\r\nExpires: 3600\r\n%sContent-Length: 0\r\n\r\n",
		box, common, cfg.User, box, rand.Uint32(), cfg.User, box, rand.Uint64(), src.Addr(), cseq, cfg.User, src, auth)
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
