// Package telnettest is a Telnet BBS for tests: the far end of the box's
// Telnet() dial-plan service (modem's bridge, the softmodem's splice and
// the end-to-end calls all meet one).
package telnettest

import (
	"bytes"
	"net"
	"time"

	"github.com/isp-box/isp-box/modem/telnet"
)

// BBS is what the test BBS does with its one caller: it greets, reads
// (echoing every chunk when Echo is set) until Until holds for all it has
// read or the caller goes, writes Reply's answer, hands all it read to
// the test and lingers before hanging up so that the last bytes leave.
type BBS struct {
	Greeting string
	Echo     bool
	// Until says when the caller is done; nil reads until the caller goes.
	Until func(read []byte) bool
	// Reply is written after the reading; nil writes nothing.
	Reply func(read []byte) string
	// Timeout bounds the reading from the greeting on; 0 means 60 s.
	Timeout time.Duration
	Linger  time.Duration
}

// Serve answers one caller on ln in a goroutine of its own and sends all
// it read on the channel (nothing if the caller never came or the Telnet
// negotiation failed). The caller of Serve closes ln.
func (b BBS) Serve(ln net.Listener) <-chan []byte {
	got := make(chan []byte, 1)
	go b.serve(ln, got)
	return got
}

func (b BBS) serve(ln net.Listener, got chan<- []byte) {
	nc, err := ln.Accept()
	if err != nil {
		return
	}
	defer nc.Close()
	c, err := telnet.Server(nc)
	if err != nil {
		return
	}
	c.Write([]byte(b.Greeting))
	timeout := b.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	nc.SetReadDeadline(time.Now().Add(timeout))
	var all []byte
	buf := make([]byte, 512)
	for b.Until == nil || !b.Until(all) {
		n, err := c.Read(buf)
		all = append(all, buf[:n]...)
		if b.Echo {
			c.Write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	if b.Reply != nil {
		c.Write([]byte(b.Reply(all)))
	}
	got <- all
	time.Sleep(b.Linger)
}

// Contains is an Until that holds once marker was read.
func Contains(marker []byte) func([]byte) bool {
	return func(read []byte) bool { return bytes.Contains(read, marker) }
}
