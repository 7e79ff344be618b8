//go:build !linux

package netstack

import (
	"context"
	"errors"
	"net/netip"
)

func newKernel(context.Context, *Stack) (engine, error) {
	return nil, errors.New("netstack: kernel mode needs Linux; use mode = userspace")
}

func kernelDNS() []netip.Addr { return nil }
