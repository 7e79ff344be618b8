//go:build tools

// Package deps pins the modules the product is built on, so that go mod tidy
// keeps them while the packages that use them are being written.
package deps

import (
	_ "github.com/creack/pty"
	_ "github.com/emiago/sipgo"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/google/nftables"
	_ "github.com/pion/rtp"
	_ "github.com/vishvananda/netlink"
	_ "go.bug.st/serial"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/sys/unix"
	_ "golang.zx2c4.com/wireguard/tun"
	_ "golang.zx2c4.com/wireguard/tun/netstack"
	_ "gvisor.dev/gvisor/pkg/tcpip/stack"
	_ "modernc.org/sqlite"
)
