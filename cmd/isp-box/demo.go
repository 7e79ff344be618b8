package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/isp-box/isp-box/internal/demo"
	"github.com/isp-box/isp-box/internal/logging"
	"github.com/isp-box/isp-box/internal/sim/ata"
	"github.com/isp-box/isp-box/internal/sim/hayes"
)

func cmdDemo(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "demo", `
Usage: isp-box demo [-c FILE] [--number N] [--login] [--softmodem] [-v]

Proves the whole chain on this machine, with no hardware, no root and
nothing to configure: it starts a box from examples/pap2t.conf (built in)
on free loopback ports with the userspace network, the virtual Linksys
PAP2T whose two lines register with the box, an emulated USR Sportster on
each line, and a "Windows 95 PC" that dials 88567682 with the client line's
modem, brings PPP up and fetches a page through the box's NAT from a web
server it starts on 127.0.0.1. Each step is printed as it happens, then
the peers and lines views. Exit status 0 when every step worked; otherwise
1 and the step that failed.`)
	cfgPath := fs.String("c", "", "config file to run instead of the built-in examples/pap2t.conf")
	number := fs.String("number", "", "number the client dials (88567682, or 5550000 with --softmodem)")
	login := fs.Bool("login", false, "log in at the text prompt as dial/dial (the seed's way) instead of AutoPPP")
	soft := fs.Bool("softmodem", false, "the box answers with its own software modem: the client calls 5550000 (dial plan Modem(answer)) with a V.22bis software modem on the RTP")
	verbose := fs.Bool("v", false, "also print every part's debug log on stderr")
	if code := fs.parse(args, 0, 0); code >= 0 {
		return code
	}
	var log *slog.Logger
	if *verbose {
		log = logging.New(e.stderr, logging.Options{Level: slog.LevelDebug})
	}
	err := demo.Run(ctx, e.stdout, demo.Options{Config: *cfgPath, Number: *number, Login: *login, Log: log, Softmodem: *soft})
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	return 0
}

func cmdSimATA(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "sim-ata", `
Usage: isp-box sim-ata -c FILE [--registrar ADDR:PORT] [--dir DIR] [--bind IP]

Runs the virtual Linksys PAP2T on its own against a running box: one SIP
line per dynamic peer of FILE (user = peer name, password = its secret),
registering with the box at FILE's udpbindaddr (0.0.0.0 means 127.0.0.1)
or --registrar, and an emulated USR Sportster 28800 behind every line.
It prints the pty of each line's modem: point the box's line device at the
ISP line's modem, and a terminal program or pppd + chat at the client
line's modem ("ATDT88567682"). Runs until interrupted.`)
	cfgPath := fs.String("c", "", "config file whose SIP peers become the ATA's lines (required)")
	registrar := fs.String("registrar", "", "the box's SIP address (default: from the config)")
	dir := fs.String("dir", "", "directory for the modems' pty links (default: a new temporary directory)")
	bind := fs.String("bind", "127.0.0.1", "IP address the ATA's lines listen on")
	if code := fs.parse(args, 0, 0); code >= 0 {
		return code
	}
	cfg, code := fs.loadConfig(*cfgPath, "")
	if code >= 0 {
		return code
	}
	var err error
	reg := cfg.PBX.General.UDPBindAddr
	if *registrar != "" {
		if reg, err = netip.ParseAddrPort(*registrar); err != nil {
			e.errorf("sim-ata: --registrar: %v", err)
			return 2
		}
	} else if reg.Addr().IsUnspecified() {
		reg = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), reg.Port())
	}
	ip, err := netip.ParseAddr(*bind)
	if err != nil {
		e.errorf("sim-ata: --bind: %v", err)
		return 2
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "isp-box-sim-ata-"); err != nil {
			e.errorf("sim-ata: %v", err)
			return 1
		}
		defer os.RemoveAll(*dir)
	}
	behind := map[string]string{}
	for _, l := range cfg.Lines {
		if l.Modem.Peer != "" {
			behind[l.Modem.Peer] = l.Modem.Name
		}
	}
	var lines []ata.LineConfig
	for _, p := range cfg.PBX.Peers {
		if p.Host == "dynamic" && p.Type != "user" {
			lines = append(lines, ata.LineConfig{Name: p.Name, User: p.Name, Password: p.Secret, Registrar: reg})
		}
	}
	if len(lines) == 0 {
		e.errorf("sim-ata: %s has no dynamic SIP peers", *cfgPath)
		return 1
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := ata.New(ata.Options{Bind: ip, Lines: lines, Log: log.With("comp", "ata")})
	if err != nil {
		e.errorf("sim-ata: %v", err)
		return 1
	}
	var modems []*hayes.Modem
	defer func() {
		for _, m := range modems {
			m.Close()
		}
	}()
	for i, lc := range lines {
		m, err := hayes.New(hayes.Options{Link: filepath.Join(*dir, lc.Name), Phone: a.Line(i), Name: lc.Name, Log: log})
		if err != nil {
			a.Close()
			e.errorf("sim-ata: modem for %s: %v", lc.Name, err)
			return 1
		}
		modems = append(modems, m)
		a.Line(i).Plug(m)
		role := "client line: dial out from this modem"
		if name, ok := behind[lc.Name]; ok {
			role = fmt.Sprintf("ISP line: the box's line %s answers this modem (set its device to this path)", name)
		}
		fmt.Fprintf(e.stdout, "line %d %-20s SIP %s  modem %s  (%s)\n", i+1, lc.Name, a.Line(i).Addr(), m.Path(), role)
	}
	fmt.Fprintf(e.stdout, "registering with %s; Ctrl-C stops\n", reg)
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		e.errorf("sim-ata: %v", err)
		return 1
	}
	return 0
}
