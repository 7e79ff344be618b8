//go:build !box

package main

import "context"

// cmdServe stands in until internal/box exists; serve.go (build tag box)
// is the real one.
func cmdServe(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "serve", `
Usage: isp-box serve -c FILE [-s SOCKET] [--db PATH] [--network userspace|kernel] [--log-level LEVEL]

Runs the box in the foreground (not wired in this build).`)
	if code := fs.parse(args, 0, 100); code >= 0 {
		return code
	}
	e.errorf("serve: not yet wired (internal/box is missing; build with -tags box once it exists)")
	return 2
}
