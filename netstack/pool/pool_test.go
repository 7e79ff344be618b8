package pool_test

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/isp-box/isp-box/netstack/pool"
)

func TestAllocate(t *testing.T) {
	gw := netip.MustParseAddr("192.168.32.1")
	type step struct {
		owner   string
		want    string // "" = any
		release string // address to release before allocating
		got     string // "" = error expected
	}
	tests := []struct {
		name   string
		prefix string
		steps  []step
	}{
		{"first skips network and gateway", "192.168.32.0/24", []step{
			{owner: "a", got: "192.168.32.2"},
			{owner: "b", got: "192.168.32.3"},
		}},
		{"fixed remote of the seed", "192.168.32.0/24", []step{
			{owner: "a", want: "192.168.32.105", got: "192.168.32.105"},
			{owner: "b", want: "192.168.32.105", got: "192.168.32.2"}, // busy: from the pool
		}},
		{"gateway never", "192.168.32.0/24", []step{
			{owner: "a", want: "192.168.32.1", got: "192.168.32.2"},
		}},
		{"broadcast and network never", "192.168.32.0/24", []step{
			{owner: "a", want: "192.168.32.255", got: "192.168.32.2"},
			{owner: "b", want: "192.168.32.0", got: "192.168.32.3"},
		}},
		{"fixed outside the pool", "192.168.32.0/24", []step{
			{owner: "a", want: "10.9.8.7", got: "10.9.8.7"},
		}},
		{"unusable wants fall back", "192.168.32.0/24", []step{
			{owner: "a", want: "127.0.0.1", got: "192.168.32.2"},
			{owner: "b", want: "224.0.0.1", got: "192.168.32.3"},
			{owner: "c", want: "0.0.0.0", got: "192.168.32.4"},
		}},
		{"exhausted /30", "192.168.32.0/30", []step{
			// .0 network, .1 gateway, .3 broadcast: only .2
			{owner: "a", got: "192.168.32.2"},
			{owner: "b", got: ""},
			{owner: "c", release: "192.168.32.2", got: "192.168.32.2"},
		}},
		{"round robin reuses late", "192.168.32.0/29", []step{
			{owner: "a", got: "192.168.32.2"},
			{owner: "b", release: "192.168.32.2", got: "192.168.32.3"},
			{owner: "c", got: "192.168.32.4"},
		}},
		{"/31 has no broadcast", "192.168.32.0/31", []step{
			{owner: "a", got: "192.168.32.0"},
			{owner: "b", got: ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := pool.New(netip.MustParsePrefix(tt.prefix), gw)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				if s.release != "" {
					p.Release(netip.MustParseAddr(s.release))
				}
				var want netip.Addr
				if s.want != "" {
					want = netip.MustParseAddr(s.want)
				}
				got, err := p.Allocate(s.owner, want)
				if s.got == "" {
					if !errors.Is(err, pool.ErrExhausted) {
						t.Fatalf("step %d: got %v, %v; want ErrExhausted", i, got, err)
					}
					continue
				}
				if err != nil || got.String() != s.got {
					t.Fatalf("step %d: got %v, %v; want %s", i, got, err, s.got)
				}
				if o, _ := p.Owner(got); o != s.owner {
					t.Fatalf("step %d: owner %q, want %q", i, o, s.owner)
				}
			}
		})
	}
}

func TestNewRejectsIPv6(t *testing.T) {
	if _, err := pool.New(netip.MustParsePrefix("2001:db8::/64")); err == nil {
		t.Fatal("IPv6 prefix accepted")
	}
}

// TestConcurrentNeverTwice allocates from many goroutines, with fixed wants
// colliding on purpose, and checks that no address is ever held twice.
func TestConcurrentNeverTwice(t *testing.T) {
	p, err := pool.New(netip.MustParsePrefix("10.0.0.0/24"), netip.MustParseAddr("10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		holder = map[netip.Addr]string{}
		wg     sync.WaitGroup
	)
	fail := make(chan string, 1)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				owner := fmt.Sprintf("g%d-%d", g, i)
				want := netip.MustParseAddr("10.0.0.105") // everyone wants the same one
				a, err := p.Allocate(owner, want)
				if err != nil {
					continue // exhausted is fine under contention
				}
				mu.Lock()
				if prev, ok := holder[a]; ok {
					select {
					case fail <- fmt.Sprintf("%v given to %s while %s holds it", a, owner, prev):
					default:
					}
				}
				holder[a] = owner
				mu.Unlock()
				if i%3 != 0 { // keep some, release most
					mu.Lock()
					delete(holder, a)
					mu.Unlock()
					p.Release(a)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case msg := <-fail:
		t.Fatal(msg)
	default:
	}
	if got, want := p.InUse(), len(holder); got != want {
		t.Fatalf("InUse %d, holders %d", got, want)
	}
}
