package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/isp-box/isp-box/internal/config"
)

func cmdCheckConfig(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "check-config", `
Usage: isp-box check-config [-q] FILE

Reads the config file FILE and the files it includes, and checks it as
"isp-box serve" would, without starting anything. If anything is wrong it
prints every problem, one "file:line: what was expected" per line, and exits
1. Otherwise it prints a summary of what the file sets up (peers, dial plan,
lines, PPP, users, network) and exits 0. Warnings (keys accepted but
ignored) are printed either way and do not fail the check.`)
	quiet := fs.Bool("q", false, "print only problems and warnings, no summary")
	if code := fs.parse(args, 1, 1); code >= 0 {
		return code
	}
	path := fs.args[0]
	cfg, err := config.Load(path)
	var list config.ErrorList
	if err != nil && !errors.As(err, &list) {
		e.errorf("%v", err)
		return 1
	}
	for _, p := range list {
		fmt.Fprintln(e.stderr, p)
	}
	if cfg != nil {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(e.stderr, "%s (warning)\n", w)
		}
		// Not a config error (an adapter may be unplugged while the box
		// is set up), but the first thing to look at when a line is down.
		for _, l := range cfg.Lines {
			if _, err := os.Stat(l.Modem.Device); err != nil {
				fmt.Fprintf(e.stderr, "%s: line %s: device %s: %v; the box retries until it appears (isp-box doctor says more) (warning)\n",
					path, l.Modem.Name, l.Modem.Device, errors.Unwrap(err))
			}
		}
	}
	if err != nil {
		e.errorf("%s: %d problem%s", path, len(list), plural(len(list)))
		return 1
	}
	if !*quiet {
		cfg.Summary(e.stdout)
	}
	return 0
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
