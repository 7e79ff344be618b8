package modem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/isp-box/isp-box/modem/telnet"
)

// dialService connects to a bridge Route's host: Telnet negotiation for
// ServiceTelnet (binary both ways, so 8-bit data passes), raw for ServiceTCP.
func dialService(ctx context.Context, r Route) (io.ReadWriteCloser, error) {
	d := net.Dialer{Timeout: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", r.Target)
	if err != nil {
		return nil, fmt.Errorf("modem: %s %s: %w", r.Service, r.Target, err)
	}
	if r.Service != ServiceTelnet {
		return nc, nil
	}
	tc, err := telnet.Client(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("modem: telnet %s: %w", r.Target, err)
	}
	return tc, nil
}

// isBridge reports whether r connects the caller to another host.
func isBridge(r Route) bool { return r.Service == ServiceTelnet || r.Service == ServiceTCP }

// splice copies between the caller's Conn and the host until either side
// ends; then both are closed (the host's end hangs the call up).
func splice(c Conn, remote io.ReadWriteCloser) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, err := io.Copy(remote, c)
		errc <- fmt.Errorf("caller: %w", eofNil(err))
	}()
	go func() {
		defer wg.Done()
		_, err := io.Copy(c, remote)
		errc <- fmt.Errorf("host: %w", eofNil(err))
	}()
	err := <-errc
	remote.Close()
	c.Close()
	wg.Wait()
	return err
}

var errEnded = errors.New("ended")

func eofNil(err error) error {
	if err == nil {
		return errEnded
	}
	return err
}

// bridgeKind is the session of a call bridged to r's host.
func bridgeKind(remote io.ReadWriteCloser) sessionKind {
	return sessionKind{handler: func(_ context.Context, c Conn, _ string) error { return splice(c, remote) }}
}
