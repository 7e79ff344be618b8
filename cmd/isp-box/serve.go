package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/isp-box/isp-box/internal/box"
	"github.com/isp-box/isp-box/internal/console"
	"github.com/isp-box/isp-box/internal/logging"
	"github.com/isp-box/isp-box/internal/sdnotify"
	"github.com/isp-box/isp-box/internal/store"
)

func cmdServe(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "serve", `
Usage: isp-box serve -c FILE [-s SOCKET] [--db PATH] [--network userspace|kernel] [--log-level LEVEL]

Runs the box in the foreground: the SIP PBX, the modem lines, PPP and the
network, as the config file FILE describes them. It logs to stderr (for
journald under systemd). SIGINT or SIGTERM stops it cleanly, live calls
and sessions ended and recorded; SIGHUP (or "isp-box reload") re-reads
FILE and applies it without dropping live calls or sessions, or keeps the
running config if the new one has problems.

A serial device that is missing is reported and retried, never fatal.
The flags override the config file's [box] and [network] settings.`)
	cfgPath := fs.String("c", "", "config file (required)")
	socket := fs.String("s", "", "control socket (default: [box] console, else "+console.DefaultSocketPath()+")")
	db := fs.String("db", "", "SQLite database (default: [box] database, else "+store.DefaultPath()+")")
	network := fs.String("network", "", "network mode: userspace (no root) or kernel (TUN + nftables) (default: [network] mode)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (default: [box] log-level, else info)")
	if code := fs.parse(args, 0, 0); code >= 0 {
		return code
	}
	switch *network {
	case "", "userspace", "kernel":
	default:
		e.errorf("serve: --network %q: want userspace or kernel", *network)
		return 2
	}
	cfg, code := fs.loadConfig(*cfgPath, fmt.Sprintf("%s has problems; not starting (see \"isp-box check-config %s\")", *cfgPath, *cfgPath))
	if code >= 0 {
		return code
	}
	level := cfg.Box.LogLevel
	if *logLevel != "" {
		if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
			e.errorf("serve: --log-level %q: want debug, info, warn or error", *logLevel)
			return 2
		}
	}
	log := newLogger(e, level)
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w.Error())
	}
	// A soft limit makes the collector work harder as the heap nears it,
	// so a flood costs CPU before it costs the board its memory. GOMEMLIMIT
	// in the environment wins, as the Go runtime documents.
	if lim := cfg.Box.MemoryLimit; lim > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(lim)
		log.Info("memory limit", "MiB", lim>>20)
	}
	opts := box.Options{
		ConfigPath: *cfgPath,
		Socket:     *socket, // "" = [box] console, else the default; box resolves it
		Database:   *db,     // "" = [box] database, else the default
		Network:    *network,
		Log:        log,
		Version:    Version(),
		Notify:     sdnotify.FromEnv(),
	}
	if err := box.Run(ctx, cfg, opts); err != nil {
		logging.Error(log, "isp-box stopped", err)
		return 1
	}
	return 0
}

// newLogger logs text to stderr. Under systemd (JOURNAL_STREAM set) the
// time is left out: journald stamps every line itself.
func newLogger(e *env, level slog.Level) *slog.Logger {
	return logging.New(e.stderr, logging.Options{Level: level, NoTime: os.Getenv("JOURNAL_STREAM") != ""})
}
