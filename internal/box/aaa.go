package box

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/radius"
	"github.com/isp-box/isp-box/internal/store"
	"github.com/isp-box/isp-box/ppp"
)

// aaa is the box's RADIUS side: it satisfies ppp.Authenticator with
// Access-Requests, and turns sessions into Accounting-Requests that go
// through a queue in the store, so that a server outage or a restart of
// the box loses none (RFC 2866 §2: the NAS retries until acknowledged).
type aaa struct {
	client *radius.Client
	cfg    radius.Config
	log    *slog.Logger
	store  *store.Store
	bus    *bus.Bus
	reg    *ppp.Sessions
	acct   bool // accounting servers configured

	kick chan struct{} // the sender has new records

	mu   sync.Mutex
	sess map[string]*aaaSession // by PPP session id
}

// aaaSession is what the box knows of one session for RADIUS.
type aaaSession struct {
	port    radius.Port
	source  string // who authenticated: file, radius, login
	class   [][]byte
	interim time.Duration
	user    string
	started bool      // Start queued
	up      time.Time // IPCP up
	state   string    // accounting state for `isp-box sessions`
	queued  int       // records of this session not yet acknowledged
	stop    context.CancelFunc
}

func newAAA(cfg radius.Config, st *store.Store, b *bus.Bus, reg *ppp.Sessions, log *slog.Logger) *aaa {
	return &aaa{
		client: radius.NewClient(cfg, log),
		cfg:    cfg, log: log, store: st, bus: b, reg: reg,
		acct: len(cfg.Acct) > 0,
		kick: make(chan struct{}, 1),
		sess: map[string]*aaaSession{},
	}
}

// newSessionID is an Acct-Session-Id: unique for this NAS (RFC 2866
// §5.5); with NAS-Identifier it tells two boxes' sessions apart.
func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// begin registers a session about to start on port.
func (a *aaa) begin(id string, port radius.Port) {
	a.mu.Lock()
	a.sess[id] = &aaaSession{port: port}
	a.mu.Unlock()
}

// Authenticate implements ppp.Authenticator.
func (a *aaa) Authenticate(ctx context.Context, req ppp.AuthRequest) (ppp.AuthResult, error) {
	m := map[ppp.AuthProto]radius.Method{ppp.AuthPAP: radius.PAP, ppp.AuthCHAP: radius.CHAP,
		ppp.AuthMSCHAP: radius.MSCHAPv1, ppp.AuthMSCHAPv2: radius.MSCHAPv2}[req.Proto]
	a.mu.Lock()
	var port radius.Port
	if s := a.sess[req.Session]; s != nil {
		port = s.port
	}
	a.mu.Unlock()
	res, err := a.client.Authenticate(ctx, radius.AuthRequest{
		Method: m, User: req.User, Password: req.Password, ID: req.ID, Challenge: req.Challenge,
		Response: req.Response, Port: port, SessionID: req.Session,
	})
	if err != nil {
		return ppp.AuthResult{Source: "radius"}, err
	}
	a.mu.Lock()
	if s := a.sess[req.Session]; s != nil && res.Accept {
		s.source, s.class, s.interim, s.user = "radius", res.Class, res.Interim, req.User
	}
	a.mu.Unlock()
	msg := res.ReplyMessage
	return ppp.AuthResult{
		OK: res.Accept, Message: msg, MSCHAPv2Success: res.MSCHAP2Success, Addr: res.FramedIP,
		SessionTimeout: res.SessionTimeout, IdleTimeout: res.IdleTimeout, MTU: res.FramedMTU,
		DNS: res.DNS, Source: "radius",
	}, nil
}

// state is the accounting state of a live session ("" if none).
func (a *aaa) state(id string) string {
	if a == nil {
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.sess[id]; s != nil {
		return s.state
	}
	return ""
}

// up is called when IPCP opens: Start, and Interim-Updates from now on.
func (a *aaa) up(ev bus.PPPUp) {
	a.mu.Lock()
	s := a.sess[ev.Session]
	if s == nil || s.started || !a.acct {
		a.mu.Unlock()
		return
	}
	a.startLocked(ev.Session, s, ev.User, time.Now())
	a.mu.Unlock()
}

// startLocked queues the Start and starts the interim timer.
// Precondition: a.mu is held.
func (a *aaa) startLocked(id string, s *aaaSession, user string, at time.Time) {
	s.started, s.up = true, at
	if s.user == "" {
		s.user = user
	}
	a.queueLocked(id, s, radius.AcctRecord{Status: radius.AcctStart, Event: at}, "start")
	iv := s.interim
	if iv <= 0 {
		iv = a.cfg.InterimInterval
	}
	if iv <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go a.interims(ctx, id, iv)
}

// interims queues an Interim-Update every iv with the live counters.
func (a *aaa) interims(ctx context.Context, id string, iv time.Duration) {
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var info *ppp.SessionInfo
			for _, si := range a.reg.List() {
				if si.ID == id {
					info = &si
					break
				}
			}
			if info == nil {
				continue
			}
			a.mu.Lock()
			if s := a.sess[id]; s != nil && s.started {
				a.queueLocked(id, s, radius.AcctRecord{
					Status: radius.AcctInterim, Event: now, FramedIP: info.Remote, SessionTime: now.Sub(s.up),
					InOctets: info.BytesIn, OutOctets: info.BytesOut, InPackets: info.PktsIn, OutPackets: info.PktsOut,
				}, "interim")
			}
			a.mu.Unlock()
		}
	}
}

// end is called with the session's record: Stop if a Start went out.
func (a *aaa) end(id string, rec ppp.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sess[id]
	if s == nil {
		return
	}
	if s.stop != nil {
		s.stop()
	}
	if a.acct && !s.started && !rec.Up.IsZero() {
		// The session ended before the bus brought its PPPUp here.
		a.startLocked(id, s, rec.User, rec.Up)
		if s.stop != nil {
			s.stop()
		}
	}
	if a.acct && s.started {
		a.queueLocked(id, s, radius.AcctRecord{
			Status: radius.AcctStop, Event: rec.End, FramedIP: rec.Remote, SessionTime: rec.End.Sub(s.up),
			InOctets: rec.BytesIn, OutOctets: rec.BytesOut, InPackets: rec.PktsIn, OutPackets: rec.PktsOut,
			Terminate: terminateCause(rec.Cause),
		}, "stop")
	}
	delete(a.sess, id)
}

// terminateCauses maps the session's end onto RFC 2866 §5.10's
// Acct-Terminate-Cause; any other end is a NAS-Error.
var terminateCauses = map[string]uint32{
	ppp.CauseCarrier:    radius.TermLostCarrier,
	ppp.CausePeer:       radius.TermUserRequest,
	ppp.CauseEcho:       radius.TermLostService,
	ppp.CauseIdle:       radius.TermIdleTimeout,
	ppp.CauseMaxConnect: radius.TermSessionTimeout,
	ppp.CauseShutdown:   radius.TermAdminReboot,
	ppp.CauseLocalClose: radius.TermAdminReset,
}

func terminateCause(cause string) uint32 {
	if t, ok := terminateCauses[cause]; ok {
		return t
	}
	return radius.TermNASError
}

// queueLocked completes rec with the session's identity, stores it and
// wakes the sender. Precondition: a.mu is held.
func (a *aaa) queueLocked(id string, s *aaaSession, rec radius.AcctRecord, status string) {
	rec.SessionID, rec.User, rec.Port, rec.Class = id, s.user, s.port, s.class
	rec.Authentic = radius.AuthenticLocal
	if s.source == "radius" {
		rec.Authentic = radius.AuthenticRADIUS
	}
	b, err := a.client.EncodeRecord(rec)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = a.store.QueueAcct(ctx, store.AcctRecord{Session: id, Status: status, Packet: b, Created: rec.Event})
		cancel()
	}
	if err != nil {
		a.log.Error("accounting record lost", "session", id, "status", status, "err", err)
		s.state = status + " lost"
		return
	}
	s.queued++
	s.state = status + " queued"
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// acked notes that a record of session id was acknowledged.
func (a *aaa) acked(id, status string) {
	a.mu.Lock()
	if s := a.sess[id]; s != nil {
		s.queued--
		if s.queued <= 0 {
			s.state = status + " sent"
		}
	}
	a.mu.Unlock()
}

func (a *aaa) failing(why string) {
	a.mu.Lock()
	for _, s := range a.sess {
		if s.queued > 0 {
			s.state = fmt.Sprintf("%d queued: %s", s.queued, why)
		}
	}
	a.mu.Unlock()
}

// send delivers queued records, oldest first, until ctx is done. A record
// no server acknowledges stays at the head of the queue; the sender backs
// off (1 s doubling to 10 s) and tries again, so Start always reaches the
// server before the Stop of the same session.
func (a *aaa) send(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		recs, err := a.store.PendingAcct(ctx, 64)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Error("accounting queue", "err", err)
			backoff = 10 * time.Second
			continue
		}
		if len(recs) == 0 {
			backoff = 0
			select {
			case <-ctx.Done():
				return
			case <-a.kick:
			}
			continue
		}
		failed := false
		for _, r := range recs {
			err := a.client.SendEncoded(ctx, r.Packet, time.Since(r.Created))
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				a.store.AcctFailed(context.WithoutCancel(ctx), r.ID, err.Error())
				if backoff == 0 {
					a.log.Warn("accounting not acknowledged; kept in the queue and retried", "session", r.Session,
						"status", r.Status, "err", err)
				}
				a.failing(shortErr(err))
				backoff = min(max(2*backoff, time.Second), 10*time.Second)
				failed = true
				break
			}
			if err := a.store.DeleteAcct(context.WithoutCancel(ctx), r.ID); err != nil {
				a.log.Error("accounting queue", "err", err)
			}
			if r.Tries > 0 {
				a.log.Info("queued accounting record delivered", "session", r.Session, "status", r.Status,
					"delay", time.Since(r.Created).Round(time.Second))
			}
			a.acked(r.Session, r.Status)
		}
		if !failed {
			backoff = 0
		}
	}
}

func shortErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, radius.ErrAuthenticator) {
		return "wrong shared secret"
	}
	if errors.Is(err, radius.ErrNoServer) {
		return "no server answered"
	}
	return err.Error()
}

// run follows the bus for IPCP up and sends the queue until ctx is done.
// At the end it gives the queue drain time to deliver the Stops of the
// sessions that shutting down just ended; what is left stays queued for
// the next start.
func (a *aaa) run(ctx context.Context, drain time.Duration) {
	if !a.acct {
		<-ctx.Done()
		return
	}
	sub := a.bus.SubscribeReliable("radius accounting", func(ev bus.Event) bool {
		_, ok := ev.(bus.PPPUp)
		return ok
	})
	sendCtx, cancelSend := context.WithCancel(context.Background())
	sent := make(chan struct{})
	go func() { defer close(sent); a.send(sendCtx) }()
	defer func() {
		sub.Close()
		t := time.NewTimer(drain)
		defer t.Stop()
		for {
			recs, err := a.store.PendingAcct(context.Background(), 1)
			if err != nil || len(recs) == 0 {
				break
			}
			select {
			case <-t.C:
				a.log.Warn("accounting records left queued for the next start", "drain", drain)
				cancelSend()
				<-sent
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		cancelSend()
		<-sent
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case env, ok := <-sub.C():
			if !ok {
				return
			}
			a.up(env.Event.(bus.PPPUp))
		}
	}
}
