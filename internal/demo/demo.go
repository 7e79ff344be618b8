package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/isp-box/isp-box/examples"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/console"
)

// Options configure Run.
type Options struct {
	// Config is the config file to run; "" = the embedded examples/pap2t.conf.
	Config string
	// Number is what the client dials; "" = 88567682.
	Number string
	// Log receives the parts' logs (e.g. with -v); nil discards.
	Log *slog.Logger
	// Login makes the client log in at the text prompt as the seed's
	// user dial/dial before PPP, instead of AutoPPP.
	Login bool
	// RingInterval is the emulated modems' ring cadence; 0 = 2 s.
	RingInterval time.Duration
	// Softmodem makes the box answer with its own software modem: the
	// dial plan gets exten 5550000 => Modem(answer), and the client's ATA
	// port carries its modem as audio, the project's V.22bis software
	// modem calling on the RTP (both ends softmodems, through the virtual
	// ATA and the PBX).
	Softmodem bool
}

// StepError names the step of the demo that failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("demo failed at step %q: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// Run is `isp-box demo`: it starts a box from the example config on free
// loopback ports, the virtual ATA with a modem on each line, dials in from
// the client line, fetches a page through the box's NAT, hangs up, and
// prints each step as it happens and the status views at the end.
func Run(ctx context.Context, out io.Writer, o Options) error {
	var mu sync.Mutex
	t0 := time.Now()
	printf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "[%6.2fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	step := func(name string, err error) error {
		if err != nil {
			return &StepError{Step: name, Err: err}
		}
		return nil
	}

	cfg, err := loadConfig(o.Config)
	if err != nil {
		return step("config", err)
	}
	if o.Softmodem {
		addSoftmodemExten(cfg)
	}
	printf("config: %s: %d SIP peers, %d modem lines, %d dial plan lines", configName(o.Config), len(cfg.PBX.Peers), len(cfg.Lines), len(cfg.PBX.Dialplan))

	b := bus.New(nil)
	evctx, evcancel := context.WithCancel(context.Background())
	evdone := make(chan struct{})
	sub := b.Subscribe("demo", 4096, nil)
	go func() {
		defer close(evdone)
		for {
			select {
			case <-evctx.Done():
				sub.Close()
				return
			case env := <-sub.C():
				if line := describe(env.Event); line != "" {
					printf("%s", line)
				}
			}
		}
	}()
	defer func() { evcancel(); <-evdone }()

	wo := WorldOptions{Config: cfg, Log: o.Log, Bus: b, RingInterval: o.RingInterval}
	if o.Softmodem {
		wo.Softmodem = "v22bis"
	}
	w, err := Start(ctx, wo)
	if err != nil {
		return step("start the box and the virtual ATA", err)
	}
	defer w.Close()
	printf("box: SIP on %s, control socket %s, userspace network", w.Box.SIPAddr(), w.Box.SocketPath())

	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = w.WaitRegistered(rctx)
	cancel()
	if err != nil {
		return step("both ATA lines register", err)
	}
	if err := waitPeersOK(ctx, w); err != nil {
		return step("qualify both peers", err)
	}

	if err := waitLinesIdle(ctx, w); err != nil {
		return step("modem lines initialised", err)
	}

	// The page the client fetches through the box's NAT.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return step("start the web server", err)
	}
	page := strings.Repeat("Welcome to your dial-up ISP in a box. ", 50) + "\n"
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain")
		io.WriteString(rw, page)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	printf("web server on http://%s/ (host loopback)", ln.Addr())

	var client string
	for _, p := range w.Peers {
		if _, ok := w.Clients[p]; ok {
			client = p
			break
		}
	}
	if client == "" {
		return step("find the client line", fmt.Errorf("every SIP peer has a modem line behind it"))
	}
	number := o.Number
	if number == "" {
		number = "88567682"
		if o.Softmodem {
			number = softmodemNumber
		}
	}
	user, pass := "dial", "dial"
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if o.Softmodem {
		printf("the client's ATA port carries its modem as audio: the project's V.22bis software modem calls; the box's own modem answers")
	}
	sess, err := Dial(dctx, w.Clients[client].Path(), DialOptions{
		Number: number, User: user, Password: pass, Login: o.Login, Log: o.Log,
		Step: func(f string, a ...any) { printf(f, a...) },
	})
	if err != nil {
		return step("dial in and bring PPP up", err)
	}

	if st, err := statusOf(ctx, w); err == nil {
		printf("isp-box sessions:")
		console.RenderSessions(indent(out, &mu), st.Sessions)
		printf("isp-box calls:")
		console.RenderCalls(indent(out, &mu), st.Calls)
	}

	rtt, err := sess.Net.Ping(dctx, sess.PPP.Remote())
	if err != nil {
		return step("ping the gateway", err)
	}
	printf("ping %s: %v", sess.PPP.Remote(), rtt.Round(10*time.Microsecond))

	// The box's DNS forwarder on the gateway answers from the host's
	// resolver (here: /etc/hosts, as the sandbox has no upstream).
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return sess.Net.DialContext(ctx, network, netip.AddrPortFrom(sess.PPP.Remote(), 53).String())
	}}
	addrs, err := res.LookupHost(dctx, "localhost")
	if err != nil {
		return step("resolve a name through the box's DNS forwarder", err)
	}
	printf("DNS via %s: localhost = %v", sess.PPP.Remote(), addrs)

	port := ln.Addr().(*net.TCPAddr).Port
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(sess.PPP.Remote(), uint16(port)))
	printf("fetching %s (the gateway stands for host loopback in the demo)", url)
	start := time.Now()
	resp, err := sess.Net.HTTPClient().Get(url)
	if err != nil {
		return step("fetch the page through the box", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return step("fetch the page through the box", err)
	}
	if resp.StatusCode != 200 || string(body) != page {
		return step("fetch the page through the box", fmt.Errorf("HTTP %s, %d bytes, want 200 and %d bytes", resp.Status, len(body), len(page)))
	}
	el := time.Since(start)
	printf("HTTP GET through the box: %s, %d bytes in %v (%.0f bit/s)", resp.Status, len(body), el.Round(time.Millisecond), float64(len(body)*8)/el.Seconds())

	printf("hanging up")
	if err := sess.HangUp(ctx); err != nil {
		return step("hang up", err)
	}
	if err := waitLinesIdle(ctx, w); err != nil {
		return step("lines idle after hang-up", err)
	}
	time.Sleep(200 * time.Millisecond) // let the last events print
	st, err := statusOf(ctx, w)
	if err != nil {
		return step("read the status over the control socket", err)
	}
	printf("isp-box peers:")
	console.RenderPeers(indent(out, &mu), st.Peers)
	printf("isp-box lines:")
	console.RenderLines(indent(out, &mu), st.Lines)
	printf("demo finished: the whole chain works")
	// Stop printing before the world shuts down: the ATA's unregistering
	// is not part of the demo.
	evcancel()
	<-evdone
	return nil
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse("examples/pap2t.conf", examples.PAP2T, examples.FS)
	}
	return config.Load(path)
}

func configName(path string) string {
	if path == "" {
		return "examples/pap2t.conf (built in)"
	}
	return path
}

func statusOf(ctx context.Context, w *World) (console.Status, error) {
	if p := w.Box.SocketPath(); p != "" {
		return console.NewClient(p).Status(ctx)
	}
	return w.Box.Status(), nil
}

// waitPeersOK waits until every qualified peer answers OPTIONS in time.
func waitPeersOK(ctx context.Context, w *World) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		ok := true
		var last string
		for _, p := range w.Box.Status().Peers {
			if p.Monitored && !strings.HasPrefix(p.Status, "OK") {
				ok = false
				last = p.Name + " " + p.Status
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitLinesIdle waits until every modem line is idle with no session, and
// the PBX holds none of them busy.
func waitLinesIdle(ctx context.Context, w *World) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		st := w.Box.Status()
		busy := ""
		for _, l := range st.Lines {
			if bus.LineStatus(l.State) != bus.LineIdle {
				busy = l.Name + " " + l.State
			}
		}
		// The PBX learns a line's state from the bus, a moment after the
		// line itself: until it has, it would answer that line's callers
		// 486, so the world is not ready yet.
		held := ""
		for _, p := range st.Peers {
			if p.LineBusy {
				held = p.Name
			}
		}
		if busy == "" && held == "" && len(st.Sessions) == 0 && len(st.Calls) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("line %s, PBX holds %q busy, %d sessions, %d calls: %w", busy, held, len(st.Sessions), len(st.Calls), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// describe turns the events a watcher of the demo cares about into one
// line each; others return "".
func describe(ev bus.Event) string {
	switch e := ev.(type) {
	case bus.PeerRegistered:
		if e.Refresh {
			return ""
		}
		return "sip: " + e.String()
	case bus.PeerStatus:
		return "sip: " + e.String()
	case bus.CallStarted, bus.CallRinging, bus.CallAnswered, bus.CallEnded:
		return "sip: " + ev.(fmt.Stringer).String()
	case bus.LineRing, bus.ModemConnected, bus.ModemError:
		return "modem: " + ev.(fmt.Stringer).String()
	case bus.LineState:
		if e.State == bus.LineIdle || e.State.InCall() {
			return "modem: " + e.String()
		}
	case bus.PPPPhase:
		return "ppp: " + e.String()
	case bus.PPPUp:
		return "ppp: " + e.String()
	case bus.PPPDown:
		return "ppp: " + e.String()
	case bus.AuthFailed, bus.SourceBanned:
		return "sip: " + ev.(fmt.Stringer).String()
	}
	return ""
}

// indent prefixes every line written through it, under the print lock.
func indent(w io.Writer, mu *sync.Mutex) io.Writer { return &indenter{w: w, mu: mu} }

type indenter struct {
	w   io.Writer
	mu  *sync.Mutex
	mid bool // in the middle of a line: no indent before the next byte
}

func (i *indenter) Write(p []byte) (int, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, l := range strings.SplitAfter(string(p), "\n") {
		if l == "" {
			continue
		}
		if !i.mid {
			io.WriteString(i.w, "          ")
		}
		io.WriteString(i.w, l)
		i.mid = !strings.HasSuffix(l, "\n")
	}
	return len(p), nil
}
