package rtpload

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDirect runs the generator without a relay: every packet sent
// arrives once, the streams' counters add up, and the latency figures are
// ordered. (Counts, not speed: nothing here depends on the machine.)
func TestDirect(t *testing.T) {
	res, err := Run(context.Background(), Direct{}, Options{Calls: 4, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Streams != 8 || res.Sent != 8*10 {
		t.Fatalf("streams %d sent %d, want 8 and 80", res.Streams, res.Sent)
	}
	if res.Received+res.Lost != res.Sent || res.Duplicates != 0 {
		t.Errorf("received %d + lost %d != sent %d (dups %d)", res.Received, res.Lost, res.Sent, res.Duplicates)
	}
	if res.Received == 0 || res.P50 > res.P99 || res.P99 > res.Max+bucket {
		t.Errorf("latency p50 %v p99 %v max %v", res.P50, res.P99, res.Max)
	}
}

// TestNGRoundTrip sets calls up through ServeNG with a handler that
// forwards each direction with its own sockets, the way an ng relay does:
// the client's offer/answer/delete reach it, and the media flows.
func TestNGRoundTrip(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	legs := map[string][2]*net.UDPConn{}
	var mu sync.Mutex
	var deleted []string
	handle := func(req map[string]any) map[string]any {
		id, _ := req["call-id"].(string)
		switch req["command"] {
		case "offer", "answer":
			remote, err := SDPAddr(req["sdp"])
			if err != nil {
				return map[string]any{"result": "error", "error-reason": err.Error()}
			}
			// The offer's answer is where the callee sends (forwarded to
			// the caller's SDP address), the answer's where the caller sends.
			c, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			l := legs[id]
			if req["command"] == "offer" {
				l[0] = c
			} else {
				l[1] = c
			}
			legs[id] = l
			go func() {
				buf := make([]byte, 1500)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					_, _ = c.WriteToUDPAddrPort(buf[:n], remote)
				}
			}()
			return map[string]any{"result": "ok", "sdp": SDP(c.LocalAddr().(*net.UDPAddr).AddrPort())}
		case "delete":
			mu.Lock()
			deleted = append(deleted, id)
			mu.Unlock()
			for _, c := range legs[id] {
				c.Close()
			}
			return map[string]any{"result": "ok"}
		default:
			return map[string]any{"result": "error", "error-reason": "unknown command"}
		}
	}
	go ServeNG(ctx, ctl, handle)
	ng, err := DialNG(ctl.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer ng.Close()
	if _, err := ng.Command(ctx, map[string]any{"command": "bogus"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("bogus command: %v", err)
	}
	res, err := Run(ctx, ng, Options{Calls: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 2*2*5 || res.Received == 0 || res.Received+res.Lost != res.Sent {
		t.Errorf("sent %d received %d lost %d", res.Sent, res.Received, res.Lost)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deleted) != 2 {
		t.Errorf("deleted %v, want both calls", deleted)
	}
}

func TestSDPAddr(t *testing.T) {
	ap := netip.MustParseAddrPort("127.0.0.1:4000")
	got, err := SDPAddr(SDP(ap))
	if err != nil || got != ap {
		t.Fatalf("SDPAddr(SDP(%v)) = %v, %v", ap, got, err)
	}
	if _, err := SDPAddr("v=0\r\nm=audio 4000 RTP/AVP 0\r\n"); err == nil {
		t.Error("no c= line: want an error")
	}
}
