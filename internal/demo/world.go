// Package demo builds the whole dial-up chain on one machine with no
// hardware and no privileges: a box from a config, the virtual ATA whose
// lines register with the box's PBX, an emulated Hayes modem on every ATA
// port (the ISP side's modems on the ptys the box's lines open, the clients'
// modems for the "Windows 95 PC" to dial with), and the client side of PPP
// and IP. `isp-box demo` and the end-to-end tests both use it.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/isp-box/isp-box/internal/box"
	"github.com/isp-box/isp-box/internal/bus"
	"github.com/isp-box/isp-box/internal/config"
	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/hayes"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/netstack"
)

// WorldOptions configure a World.
type WorldOptions struct {
	// Config is the box's config (parsed, e.g. examples/pap2t.conf). World
	// changes what a machine without hardware needs: SIP on a free
	// loopback port, each line's device the pty of an emulated modem,
	// no UUCP lock or RTS/CTS on ptys, the database and control socket in
	// Dir, and (unless KeepNetwork) the userspace network.
	Config *config.Config
	// Dir holds the ptys' links, the database and the socket; "" = a new
	// temporary directory removed by Close.
	Dir string
	// RingInterval is the emulated modems' ring cadence; 0 = 2 s.
	RingInterval time.Duration
	// Log receives every part's logs; nil discards.
	Log *slog.Logger
	// Bus, if set, is the box's bus (to watch events from the start).
	Bus *bus.Bus
	// Socket: "" = a socket in Dir; "-" = no control socket.
	Socket string
	// Expires is the ATA lines' registration lifetime; 0 = 3600 s.
	Expires time.Duration
	// Notify, if set, is the ATA's ata.Options.Notify: told every change
	// of a line's registration or call state (tests watch the ISP port
	// ring or stay quiet). It must not block.
	Notify func(ata.LineInfo)
	// KeepNetwork runs the config's [network] as it is (e.g. kernel mode,
	// in a network namespace a test made as root) instead of the
	// unprivileged userspace network with host loopback.
	KeepNetwork bool
	// Softmodem, if set (a modulation: "v22bis"), makes the ATA ports of
	// the callers (no box line behind them) carry their modem as audio:
	// the ATA runs the project's software modem as the calling modem on
	// the call's G.711 RTP (ata.LineConfig.Softmodem).
	Softmodem string
}

// World is a running chain: box, ATA and modems.
type World struct {
	Box *box.Box
	ATA *ata.ATA
	Bus *bus.Bus
	// ISP maps a box line name to the emulated modem on its pty.
	ISP map[string]*hayes.Modem
	// Clients maps a SIP peer with no modem line behind it to the
	// emulated modem plugged into its ATA port: what the caller dials with.
	Clients map[string]*hayes.Modem
	// Peers is the SIP peer of each ATA line, in port order.
	Peers []string
	Dir   string

	cancel    context.CancelFunc // stops the box
	ataCancel context.CancelFunc // stops the ATA
	boxDone   chan error
	ataDone   chan error
	tmp       bool
	modems    []*hayes.Modem

	closeOnce sync.Once
	closeErr  error
}

// Start builds and starts a World. It returns once the box runs and the ATA
// has started registering; use WaitRegistered to wait for the lines.
func Start(ctx context.Context, opts WorldOptions) (w *World, err error) {
	if opts.Config == nil {
		return nil, errors.New("demo: no config")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w = &World{ISP: map[string]*hayes.Modem{}, Clients: map[string]*hayes.Modem{}, Dir: opts.Dir}
	if w.Dir == "" {
		if w.Dir, err = os.MkdirTemp("", "isp-box-demo-"); err != nil {
			return nil, err
		}
		w.tmp = true
	}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	ring := opts.RingInterval
	if ring == 0 {
		ring = 2 * time.Second
	}
	cfg := *opts.Config
	cfg.PBX.General.UDPBindAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
	if !opts.KeepNetwork {
		cfg.Net.Mode = netstack.Userspace
		// The demo's web server is on host loopback; the client reaches it
		// at the gateway's address, as a QEMU guest reaches 10.0.2.2.
		cfg.Net.HostLoopback = true
	}
	cfg.Lines = append([]config.Line(nil), cfg.Lines...)

	// The ISP side: one modem per box line, on the pty the line opens.
	behind := map[string]string{} // SIP peer -> box line
	for i := range cfg.Lines {
		lc := &cfg.Lines[i].Modem
		if lc.Kind == modem.KindVirtual {
			continue // no modem behind it: the box plays the modem on the port the config names
		}
		m, err := hayes.New(hayes.Options{
			Link: filepath.Join(w.Dir, "tty-"+lc.Name), RingInterval: ring,
			Name: lc.Name, Log: log,
		})
		if err != nil {
			return nil, fmt.Errorf("demo: modem for line %s: %w", lc.Name, err)
		}
		w.modems = append(w.modems, m)
		w.ISP[lc.Name] = m
		lc.Device = m.Path()
		lc.Lock = false         // nothing else opens these ptys
		lc.FlowControl = "none" // a pty has no CTS
		lc.PortOwner, lc.PortGroup = "", ""
		if lc.Peer != "" {
			behind[lc.Peer] = lc.Name
		}
	}

	w.Bus = opts.Bus
	if w.Bus == nil {
		w.Bus = bus.New(nil)
	}
	sock := opts.Socket
	if sock == "" {
		sock = filepath.Join(w.Dir, "isp-box.sock")
	}
	started := make(chan *box.Box, 1)
	b, err := box.New(&cfg, box.Options{
		Socket:    sock,
		Database:  w.DatabasePath(),
		Log:       log,
		Version:   "demo",
		Bus:       w.Bus,
		Started:   func(b *box.Box) { started <- b },
		NoSignals: true,
	})
	if err != nil {
		return nil, err
	}
	w.Box = b
	rctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.boxDone = make(chan error, 1)
	go func() { w.boxDone <- b.Run(rctx) }()
	select {
	case <-started:
	case err := <-w.boxDone:
		w.boxDone <- err
		if err == nil {
			err = errors.New("box stopped at start")
		}
		return nil, fmt.Errorf("demo: box: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	// The ATA: one port per SIP peer that registers, with its secret.
	var lines []ata.LineConfig
	for _, p := range cfg.PBX.Peers {
		if p.Host != "dynamic" || p.Type == "user" {
			continue
		}
		lc := ata.LineConfig{
			Name: p.Name, User: p.Name, Password: p.Secret,
			Registrar: b.SIPAddr(), Expires: opts.Expires,
		}
		if _, isp := behind[p.Name]; !isp {
			lc.Softmodem = opts.Softmodem
		}
		lines = append(lines, lc)
		w.Peers = append(w.Peers, p.Name)
	}
	if len(lines) == 0 {
		return nil, errors.New("demo: the config has no dynamic SIP peers for the ATA")
	}
	a, err := ata.New(ata.Options{Log: log.With("comp", "ata"), Lines: lines, Notify: opts.Notify})
	if err != nil {
		return nil, fmt.Errorf("demo: ata: %w", err)
	}
	w.ATA = a
	for i, peer := range w.Peers {
		if name, ok := behind[peer]; ok {
			m := w.ISP[name]
			a.Line(i).Plug(m)
			continue
		}
		m, err := hayes.New(hayes.Options{
			Link: filepath.Join(w.Dir, "client-"+peer), Phone: a.Line(i), RingInterval: ring,
			Name: peer, Log: log,
		})
		if err != nil {
			return nil, fmt.Errorf("demo: client modem %s: %w", peer, err)
		}
		w.modems = append(w.modems, m)
		a.Line(i).Plug(m)
		w.Clients[peer] = m
	}
	w.ataDone = make(chan error, 1)
	// The ATA stops before the box (Close), as when the ATA is unplugged
	// and then the box is shut down: its lines hang up and unregister
	// while the box still answers.
	actx, acancel := context.WithCancel(context.Background())
	w.ataCancel = acancel
	go func() { w.ataDone <- a.Run(actx) }()
	return w, nil
}

// WaitRegistered waits until every ATA line holds a registration.
func (w *World) WaitRegistered(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		n := 0
		for _, li := range w.ATA.Describe() {
			if li.Registered {
				n++
			}
		}
		if n == len(w.Peers) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d ATA lines registered: %w", n, len(w.Peers), ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops the ATA, the box and the modems, and removes a temporary Dir.
// It returns the box's error, if any. Calling it again returns the same.
func (w *World) Close() error {
	w.closeOnce.Do(func() { w.closeErr = w.close() })
	return w.closeErr
}

func (w *World) close() error {
	var err error
	if w.ataCancel != nil {
		w.ataCancel()
	}
	if w.ataDone != nil {
		<-w.ataDone
	}
	if w.cancel != nil {
		w.cancel()
	}
	if w.boxDone != nil {
		err = <-w.boxDone
	}
	for _, m := range w.modems {
		m.Close()
	}
	if w.tmp {
		os.RemoveAll(w.Dir)
	}
	return err
}
