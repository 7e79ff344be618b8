package pbx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/pbx/dialplan"
)

// Options are the Server's collaborators. Every field may be nil/zero.
type Options struct {
	Bus      *bus.Bus         // events are published here; nil = none
	Log      *slog.Logger     // nil = discard
	Bindings BindingStore     // where registrations survive a restart; nil = memory only
	Now      func() time.Time // nil = time.Now
	// Modem serves the calls the dial plan answers with Modem(answer);
	// nil = such calls are refused (503).
	Modem ModemHandler
}

// Server is the PBX. Create it with New, run it with Run.
type Server struct {
	log   *slog.Logger
	bus   *bus.Bus
	store BindingStore
	// trust is where the peers are, shared by the read loops
	// (currentTrust); trustBuilding marks a rebuild in progress.
	trust         atomic.Pointer[trustSet]
	trustBuilding atomic.Bool
	// modemHandler serves Modem(answer) calls (Options.Modem).
	modemHandler ModemHandler
	now          func() time.Time
	nonces       *nonces
	ready        chan struct{}
	wake         chan struct{} // wakes housekeeping early
	callSeq      atomic.Uint64
	counters     counters
	edge         edgeCounters
	inflight     atomic.Int64 // request handlers running
	// srcLimit limits datagrams per untrusted source address, guessLimit
	// digest guesses per peer name from away from the peer (see admit).
	srcLimit   limiter
	guessLimit limiter
	strangers  limiter // all untrusted sources together

	// handlers counts request handlers in flight, so Run can wait for them
	// before closing the UA: sipgo answers a late handler's response
	// through a new socket of its own that nothing would close.
	hmu      sync.RWMutex // guards stopping against handlers.Add
	stopping bool
	handlers sync.WaitGroup

	// set by Run before ready is closed, read-only afterwards
	ua     *sipgo.UserAgent
	cli    *sipgo.Client
	addr   netip.AddrPort // the bound socket
	laddr  sip.Addr       // the same, as sipgo wants it for pinning the source
	runCtx context.Context
	wg     sync.WaitGroup // goroutines of calls and pokes

	// gen is cfg.General, for the readers on every request's path
	// (general) that must not queue on mu: swapped with cfg under mu.
	gen atomic.Pointer[General]

	mu       sync.Mutex // guards everything below
	cfg      Config
	plan     *dialplan.Plan
	peers    map[string]*peer
	calls    map[string]*call
	dialogs  map[dialogKey]*dialogRef
	ended    endedDialogs // dialogs that ended less than Timer J ago
	fails    map[netip.Addr]*failures
	bans     map[netip.Addr]time.Time
	lineBusy map[string]bool      // peer -> the modem line behind it is busy/down
	lineFree map[string]time.Time // peer -> since when its modem line carries no call
	localIPs map[netip.Addr]netip.Addr

	trunks trunkState // outbound registrations (trunk.go)
}

type counters struct {
	malformed atomic.Uint64 // datagrams that failed to parse or lacked mandatory headers
	banned    atomic.Uint64 // datagrams dropped from banned sources
	authFail  atomic.Uint64
}

type failures struct {
	n     int
	first time.Time
}

// peer is one configured device and its live state. Guarded by Server.mu.
type peer struct {
	cfg      Peer
	binding  *Binding
	lastms   int // chan_sip's lastms: 0 unknown, -1 unreachable, else RTT in ms
	rtt      time.Duration
	nextPoke time.Time
	poking   bool
	pokeDone chan struct{} // closed when the poke in flight has its answer
	calls    int
	status   string // last status published
}

// New validates cfg and returns a Server. It does not bind.
func New(cfg Config, opts Options) (*Server, error) {
	s := &Server{
		log:          opts.Log,
		bus:          opts.Bus,
		store:        opts.Bindings,
		now:          opts.Now,
		nonces:       newNonces(),
		ready:        make(chan struct{}),
		wake:         make(chan struct{}, 1),
		calls:        map[string]*call{},
		dialogs:      map[dialogKey]*dialogRef{},
		ended:        endedDialogs{until: map[dialogKey]time.Time{}},
		fails:        map[netip.Addr]*failures{},
		bans:         map[netip.Addr]time.Time{},
		lineBusy:     map[string]bool{},
		lineFree:     map[string]time.Time{},
		localIPs:     map[netip.Addr]netip.Addr{},
		modemHandler: opts.Modem,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.log = slog.New(newFloodHandler(s.log.Handler(), s.now))
	if s.store == nil {
		s.store = NewMemoryBindings()
	}
	plan, peers, err := compileConfig(cfg)
	if err != nil {
		return nil, err
	}
	s.cfg, s.plan, s.peers = withDefaults(cfg), plan, peers
	g := s.cfg.General // a copy: Reload overwrites s.cfg in place
	s.gen.Store(&g)
	return s, nil
}

// Ready is closed once Run has bound its socket.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address; valid after Ready.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Malformed is the number of datagrams dropped because they did not parse
// or lacked mandatory headers.
func (s *Server) Malformed() uint64 { return s.counters.malformed.Load() }

// Reload swaps in a new config: peers and dial plan. Bindings of peers that
// still exist and calls in progress are kept. The bind address is not
// changed by a reload.
func (s *Server) Reload(cfg Config) error {
	plan, peers, err := compileConfig(cfg)
	if err != nil {
		return err
	}
	cfg = withDefaults(cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, np := range peers {
		if op := s.peers[name]; op != nil {
			np.binding, np.lastms, np.rtt, np.nextPoke, np.calls, np.status = op.binding, op.lastms, op.rtt, op.nextPoke, op.calls, op.status
			np.poking, np.pokeDone = op.poking, op.pokeDone
		}
	}
	cfg.General.UDPBindAddr = s.cfg.General.UDPBindAddr
	s.cfg, s.plan, s.peers = cfg, plan, peers
	g := cfg.General
	s.gen.Store(&g)
	s.applyLimits(cfg.General)
	return nil
}

// general returns a copy of [general], which Reload may replace.
func (s *Server) general() General { return *s.gen.Load() }

func (s *Server) publish(ev bus.Event) {
	if s.bus != nil {
		s.bus.Publish(ev)
	}
}

// parseFilter counts the datagrams sipgo's transport fails to parse (it
// only logs them) and keeps their bytes out of our log.
func parseFilter(h slog.Handler, n *atomic.Uint64) slog.Handler {
	return gateHandler{h, func(_ context.Context, r slog.Record) bool {
		if r.Message == "failed to parse" {
			n.Add(1)
			return false
		}
		return true
	}}
}

// Run binds the UDP socket of udpbindaddr and serves it until ctx is
// done (see Serve).
func (s *Server) Run(ctx context.Context) error {
	gen := s.general()
	bind := gen.UDPBindAddr
	if !bind.IsValid() {
		bind = netip.MustParseAddrPort("0.0.0.0:5060")
	}
	network := "udp4"
	if bind.Addr().Is6() && !bind.Addr().Is4In6() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(bind))
	if err != nil {
		return fmt.Errorf("pbx: listen %s: %w", bind, err)
	}
	return s.Serve(ctx, conn)
}

// Serve serves SIP on conn until ctx is done, like net/http's Serve: the
// caller binds, Serve owns conn from then on and closes it. When ctx is
// done it ends the calls in progress with BYE and returns.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	defer conn.Close()
	la, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return fmt.Errorf("pbx: Serve needs a UDP socket, got %T", conn.LocalAddr())
	}
	if uc, ok := conn.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(readBuffer) // best effort: the kernel caps it at rmem_max
	}
	gen := s.general()
	s.addr = la.AddrPort()
	s.addr = netip.AddrPortFrom(s.addr.Addr().Unmap(), s.addr.Port())
	s.laddr = sip.Addr{IP: net.IP(s.addr.Addr().AsSlice()), Port: int(s.addr.Port())}
	s.applyLimits(gen)

	sipLog := slog.New(parseFilter(s.log.With("lib", "sipgo").Handler(), &s.counters.malformed))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(gen.UserAgent),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipLog),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(s.strayResponse),
		),
	)
	if err != nil {
		return fmt.Errorf("pbx: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		return fmt.Errorf("pbx: %w", err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientLogger(sipLog))
	if err != nil {
		return fmt.Errorf("pbx: %w", err)
	}
	s.ua, s.cli = ua, cli
	for _, m := range []sip.RequestMethod{sip.REGISTER, sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.OPTIONS, sip.UPDATE, sip.INFO} {
		srv.OnRequest(m, s.guard(s.route(m)))
	}
	srv.OnNoRoute(s.guard(s.handleNoRoute))

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.runCtx = runCtx
	s.mu.Unlock()
	s.loadBindings(runCtx)

	feed := &feeder{conn: conn, serve: srv.ServeUDP}
	feed.startGen()
	served := make(chan struct{})
	var readers sync.WaitGroup
	for range entryReaders() {
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.readLoop(conn, feed)
		}()
	}
	go func() {
		readers.Wait()
		close(served)
	}()
	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); s.runTrunks(runCtx) }()
	go func() { defer bg.Done(); s.housekeeping(runCtx) }()
	go func() { defer bg.Done(); s.watchLines(runCtx) }()
	s.log.Info("pbx listening", "addr", s.addr)
	close(s.ready)

	<-ctx.Done()
	s.shutdownCalls()
	cancel()
	bg.Wait()
	// No new handlers, and the running ones done, before waiting for the
	// work they start: a handler's s.wg.Add (a BYE's doRequest, a poke)
	// racing s.wg.Wait at a zero count is what sync.WaitGroup forbids.
	s.hmu.Lock()
	s.stopping = true
	s.hmu.Unlock()
	handled := make(chan struct{})
	go func() { s.handlers.Wait(); close(handled) }()
	select {
	case <-handled:
	case <-time.After(5 * time.Second):
		s.log.Warn("request handlers still running at shutdown")
	}
	s.wg.Wait()
	conn.Close()
	<-served
	feed.stop()
	_ = ua.Close()
	return nil
}

// applyLimits sets the rate limits from [general].
func (s *Server) applyLimits(g General) {
	s.srcLimit.set(float64(g.SourceRate), 2*float64(g.SourceRate))
	s.guessLimit.set(float64(g.GuessRate), float64(guessBurst))
	if g.SourceRate > 0 {
		s.strangers.set(strangerRate, 2*strangerRate)
	} else {
		s.strangers.set(-1, 1) // sourcerate=0: no limit on strangers at all
	}
}

// guessBurst is how many guesses at one name may come at once before the
// per-name rate applies: a real device that lost its binding needs one or
// two.
const guessBurst = 10

// guard drops requests from banned sources and requests that lack the
// headers every request must carry (RFC 3261 §8.1.1), and recovers from a
// panic in a handler so that one bad request cannot stop the box.
func (s *Server) guard(h func(*sip.Request, sip.ServerTransaction)) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		s.hmu.RLock()
		if s.stopping {
			s.hmu.RUnlock()
			return // shutting down: no answer, the UA retransmits elsewhere or later
		}
		s.handlers.Add(1)
		s.hmu.RUnlock()
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		defer s.handlers.Done()
		defer func() {
			if r := recover(); r != nil {
				s.counters.malformed.Add(1)
				s.log.Error("handler panic", "method", req.Method, "panic", r)
			}
		}()
		if !validRequest(req) {
			s.counters.malformed.Add(1)
			return
		}
		h(req, tx)
	}
}

// route is the handler for a method.
func (s *Server) route(m sip.RequestMethod) func(*sip.Request, sip.ServerTransaction) {
	switch m {
	case sip.REGISTER:
		return s.handleRegister
	case sip.INVITE:
		return s.handleInvite
	case sip.ACK:
		return s.handleAck
	case sip.CANCEL:
		return s.handleCancel
	case sip.OPTIONS:
		return s.handleOptions
	case sip.BYE, sip.UPDATE, sip.INFO:
		return s.handleInDialog
	}
	return s.handleNoRoute
}

func validRequest(req *sip.Request) bool {
	return req.Via() != nil && req.From() != nil && req.To() != nil && req.CallID() != nil &&
		req.CSeq() != nil && req.CSeq().MethodName == req.Method && req.Recipient.Host != ""
}

func sourceOf(req *sip.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// localIP is the address of ours a peer at remote reaches us on: the bound
// address, externip, or the source address the kernel picks for remote.
func (s *Server) localIP(remote netip.Addr) netip.Addr {
	if a := s.addr.Addr(); a.IsValid() && !a.IsUnspecified() {
		return a
	}
	s.mu.Lock()
	ext := s.cfg.General.ExternIP
	ip, ok := s.localIPs[remote]
	s.mu.Unlock()
	if ext.IsValid() {
		return ext
	}
	if ok {
		return ip
	}
	ip = netip.MustParseAddr("127.0.0.1")
	if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 9))); err == nil {
		ip = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}
	s.mu.Lock()
	if len(s.localIPs) >= maxLocalIPs {
		// the loop check asks this for any Via host a stranger writes:
		// a cache, not a record, so it starts over rather than grow
		clear(s.localIPs)
	}
	s.localIPs[remote] = ip
	s.mu.Unlock()
	return ip
}

// maxLocalIPs bounds the cache of localIP.
const maxLocalIPs = 1024

// allowHeader lists what we accept, for Allow: headers.
const allowMethods = "INVITE, ACK, CANCEL, OPTIONS, BYE, REGISTER, UPDATE, INFO"

// respond sends a response built from req with our Server header.
func (s *Server) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	res.AppendHeader(sip.NewHeader("Server", s.general().UserAgent))
	if code != 100 {
		res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if body != nil && res.ContentType() == nil {
		ct := sip.ContentTypeHeader("application/sdp")
		res.AppendHeader(&ct)
	}
	s.routeResponse(req, res)
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", "code", code, "err", err)
	}
}

// routeResponse applies nat= to where a response goes (RFC 3261 §18.2.2,
// RFC 3581 §4). With force_rport (or auto_force_rport and NAT seen) the
// response goes back to the packet's source with rport and received, even
// if the Via did not ask; otherwise, without rport, to the Via's port at
// the source address.
func (s *Server) routeResponse(req *sip.Request, res *sip.Response) {
	v := res.Via()
	src := sourceOf(req)
	if v == nil || !src.IsValid() {
		return
	}
	name := req.From().Address.User
	if req.Method == sip.REGISTER {
		name = req.To().Address.User
	}
	s.mu.Lock()
	n := natSetting{autoForce: true}
	if p := s.peers[name]; p != nil {
		n = parseNAT(p.cfg.NAT)
	}
	s.mu.Unlock()
	force := n.forceRport || (n.autoForce && viaNAT(req, src))
	if _, has := v.Params.Get("rport"); has {
		return // sipgo filled rport and received already
	}
	if force {
		v.Params.Add("rport", strconv.Itoa(int(src.Port())))
		v.Params.Add("received", src.Addr().String())
		res.SetDestination(src.String())
		return
	}
	port := v.Port
	if port == 0 {
		port = 5060
	}
	res.SetDestination(netip.AddrPortFrom(src.Addr(), uint16(port)).String())
}

func (s *Server) handleNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	s.respond(tx, req, 405, "Method Not Allowed", nil)
}

// handleOptions answers OPTIONS outside a dialog (RFC 3261 §11.2); inside
// a dialog it is relayed like any other request.
func (s *Server) handleOptions(req *sip.Request, tx sip.ServerTransaction) {
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		s.handleInDialog(req, tx)
		return
	}
	s.respond(tx, req, 200, "OK", nil, sip.NewHeader("Accept", "application/sdp"))
}

// strayResponse handles responses that match no transaction: a 2xx to an
// INVITE we sent whose transaction is gone is ACKed again (RFC 3261
// §13.2.2.4), so the callee stops retransmitting.
func (s *Server) strayResponse(res *sip.Response) {
	if !res.IsSuccess() || res.CSeq() == nil || res.CSeq().MethodName != sip.INVITE || res.CallID() == nil {
		return
	}
	tag, _ := res.From().Params.Get("tag")
	s.mu.Lock()
	ref := s.dialogs[dialogKey{res.CallID().Value(), tag}]
	s.mu.Unlock()
	if ref != nil {
		ref.call.reAck(ref.side, res)
	}
}
