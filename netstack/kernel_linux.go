package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/isp-box/isp-box/netstack/dnsfwd"
)

// tunHeadroom is room in front of a packet written to the TUN device for
// the virtio-net header wireguard's tun writes there (virtioNetHdrLen = 10).
const tunHeadroom = 16

// kernel routes the clients' packets through the host's kernel: one TUN
// device for all sessions (their packets are written to it, and what the
// kernel routes to it is read and handed to the session that owns the
// destination), a /32 route per client, and an nftables table of its own.
//
// Everything is bound to the network namespace New ran in, so that Attach
// and Close may be called from any goroutine (and any OS thread).
type kernel struct {
	st     *Stack
	ns     netns.NsHandle
	nl     *netlink.Handle
	nft    *nftables.Conn
	dev    tun.Device
	link   netlink.Link // the TUN device
	uplink netlink.Link
	table  *nftables.Table
	set    *nftables.Set // "clients": every attached client address

	forwardWas string // ip_forward before we switched it on; "" = untouched

	writeMu sync.Mutex // guards wbuf
	wbuf    []byte

	mu      sync.Mutex              // guards proxied and serialises nft batches
	proxied map[netip.Addr]struct{} // proxy-ARP entries on the uplink

	wg sync.WaitGroup // the reader
}

func newKernel(ctx context.Context, st *Stack) (eng engine, err error) {
	if err := checkCapNetAdmin(); err != nil {
		return nil, err
	}
	cfg := st.cfg
	k := &kernel{st: st, proxied: map[netip.Addr]struct{}{}, wbuf: make([]byte, tunHeadroom+65535)}
	k.ns, err = netns.Get()
	if err != nil {
		return nil, fmt.Errorf("netstack: kernel: current netns: %w", err)
	}
	defer func() {
		if err != nil {
			k.teardown()
		}
	}()
	k.nl, err = netlink.NewHandleAt(k.ns)
	if err != nil {
		return nil, fmt.Errorf("netstack: kernel: netlink: %w", err)
	}
	k.nft, err = nftables.New(nftables.WithNetNSFd(int(k.ns)))
	if err != nil {
		return nil, fmt.Errorf("netstack: kernel: nftables: %w", err)
	}
	if k.uplink, err = k.findUplink(cfg.Uplink); err != nil {
		return nil, err
	}
	// Our TUN device is not persistent: it vanishes with the process that
	// holds it, even after kill -9. One that exists belongs to a running
	// box (or to someone else): never take it over, nor its table.
	if _, err := k.nl.LinkByName(cfg.TunName); err == nil {
		return nil, fmt.Errorf("netstack: kernel: device %s exists: another isp-box running? (set a different TUN name and table)", cfg.TunName)
	}
	k.removeStale()

	dev, err := tun.CreateTUN(cfg.TunName, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("netstack: kernel: create TUN %s: %w", cfg.TunName, err)
	}
	k.dev = dev
	if k.link, err = k.nl.LinkByName(cfg.TunName); err != nil {
		return nil, fmt.Errorf("netstack: kernel: TUN %s: %w", cfg.TunName, err)
	}
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: cfg.Gateway.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := k.nl.AddrAdd(k.link, gw); err != nil {
		return nil, fmt.Errorf("netstack: kernel: address %v on %s: %w", cfg.Gateway, cfg.TunName, err)
	}
	if err := k.nl.LinkSetUp(k.link); err != nil {
		return nil, fmt.Errorf("netstack: kernel: %s up: %w", cfg.TunName, err)
	}
	if err := k.installTable(); err != nil {
		return nil, err
	}
	if err := k.enableForwarding(); err != nil {
		return nil, err
	}
	k.wg.Add(1)
	go k.readLoop()
	st.log.Info("kernel routing", "tun", cfg.TunName, "uplink", k.uplink.Attrs().Name, "table", cfg.Table, "ip_forward_was", k.forwardWas)
	return k, nil
}

// kernelDNS is what a client gets in kernel mode when Config.DNS is empty:
// the host's own resolvers, except loopback ones the client cannot reach.
func kernelDNS() []netip.Addr {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ap := range dnsfwd.ParseResolvConf(b) {
		if a := ap.Addr(); a.Is4() && !a.IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}

func (k *kernel) findUplink(name string) (netlink.Link, error) {
	if name != "" {
		l, err := k.nl.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("netstack: kernel: uplink %s: %w", name, err)
		}
		return l, nil
	}
	routes, err := k.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("netstack: kernel: routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified() && maskBits(r.Dst.Mask) == 0) && r.LinkIndex > 0 {
			l, err := k.nl.LinkByIndex(r.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("netstack: kernel: default route's link: %w", err)
			}
			return l, nil
		}
	}
	return nil, errors.New("netstack: kernel: no default route; set the uplink interface")
}

func maskBits(m net.IPMask) int {
	ones, _ := m.Size()
	return ones
}

// removeStale removes what a crashed run left: the table, after reading its
// client set to find the proxy-ARP entries it had made.
func (k *kernel) removeStale() {
	cfg := k.st.cfg
	if t, err := k.nft.ListTableOfFamily(cfg.Table, nftables.TableFamilyIPv4); err == nil && t != nil {
		if s, err := k.nft.GetSetByName(t, "clients"); err == nil {
			if elems, err := k.nft.GetSetElements(s); err == nil {
				for _, e := range elems {
					if a, ok := netip.AddrFromSlice(e.Key); ok {
						k.delProxy(a)
					}
				}
			}
		}
		k.nft.DelTable(t)
		if err := k.nft.Flush(); err != nil {
			k.st.log.Warn("removing stale nftables table", "table", cfg.Table, "err", err)
		} else {
			k.st.log.Warn("removed stale nftables table of a previous run", "table", cfg.Table)
			k.st.notice("removed stale nftables table " + cfg.Table + " of a previous run")
		}
	}
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// installTable creates, in one transaction:
//
//	table ip <Table> {
//	  set clients { type ipv4_addr; }
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    iifname <tun> ip saddr != @clients counter drop
//	    iifname <tun> oifname <tun> drop                       # Isolate
//	    iifname <tun> tcp flags & (syn|rst) == syn tcp option maxseg size > MSS counter tcp option maxseg size set MSS
//	    oifname <tun> (the same)
//	    iifname <tun> oifname != <tun> ip daddr <allowed net> accept  # BlockPrivate: Allow and DNS
//	    iifname <tun> oifname != <tun> ip daddr <private net> drop    # BlockPrivate
//	  }
//	  chain input { type filter hook input priority filter; policy accept;  # BlockHost
//	    iifname <tun> ct state established,related accept
//	    iifname <tun> meta l4proto icmp accept
//	    iifname <tun> ip daddr <allowed net> accept
//	    iifname <tun> counter drop
//	  }
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr @clients oifname <uplink> masquerade
//	  }
//	}
func (k *kernel) installTable() error {
	cfg := k.st.cfg
	tunName, up := ifname(cfg.TunName), ifname(k.uplink.Attrs().Name)
	k.table = k.nft.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: cfg.Table})
	k.set = &nftables.Set{Table: k.table, Name: "clients", KeyType: nftables.TypeIPAddr}
	if err := k.nft.AddSet(k.set, nil); err != nil {
		return fmt.Errorf("netstack: kernel: nft set: %w", err)
	}
	acceptPolicy := nftables.ChainPolicyAccept
	fwd := k.nft.AddChain(&nftables.Chain{
		Name: "forward", Table: k.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &acceptPolicy,
	})
	post := k.nft.AddChain(&nftables.Chain{
		Name: "postrouting", Table: k.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &acceptPolicy,
	})
	iif := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tunName},
	}
	oif := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tunName},
	}
	notOif := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: tunName},
	}
	saddr := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	daddr := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
	rule := func(c *nftables.Chain, es ...[]expr.Any) {
		var all []expr.Any
		for _, e := range es {
			all = append(all, e...)
		}
		k.nft.AddRule(&nftables.Rule{Table: k.table, Chain: c, Exprs: all})
	}
	drop := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}

	// Anti-spoofing in the kernel too (BCP 38); Session.Send drops first.
	rule(fwd, iif, []expr.Any{saddr, &expr.Lookup{SourceRegister: 1, SetName: k.set.Name, SetID: k.set.ID, Invert: true}}, drop)
	if cfg.Isolate {
		rule(fwd, iif, oif, drop)
	}
	// MSS clamp to the PPP MTU (RFC 879: MSS = MTU - 40), both directions.
	mss := binaryutil.BigEndian.PutUint16(uint16(cfg.MTU - 40))
	clamp := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x02 | 0x04}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
		// TCP option 2 (MSS): kind, length, then the 2-byte value at offset 2.
		&expr.Exthdr{Op: expr.ExthdrOpTcpopt, Type: 2, Offset: 2, Len: 2, DestRegister: 1},
		&expr.Cmp{Op: expr.CmpOpGt, Register: 1, Data: mss},
		&expr.Counter{},
		&expr.Immediate{Register: 1, Data: mss},
		&expr.Exthdr{Op: expr.ExthdrOpTcpopt, Type: 2, Offset: 2, Len: 2, SourceRegister: 1},
	}
	rule(fwd, iif, clamp)
	rule(fwd, oif, clamp)
	dst := func(p netip.Prefix) []expr.Any {
		return []expr.Any{daddr,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(p.Bits(), 32), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
		}
	}
	accept := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	allow := k.st.allowNets()
	if cfg.BlockPrivate {
		// After the clamp: an accept ends the chain.
		for _, p := range allow {
			rule(fwd, iif, notOif, dst(p), accept)
		}
		for _, p := range privateNets {
			// Not towards another client: that is Isolate's business.
			rule(fwd, iif, notOif, dst(p), drop)
		}
	}
	if cfg.BlockHost {
		in := k.nft.AddChain(&nftables.Chain{
			Name: "input", Table: k.table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &acceptPolicy,
		})
		rule(in, iif, []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}, accept)
		rule(in, iif, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMP}},
		}, accept)
		for _, p := range allow {
			rule(in, iif, dst(p), accept)
		}
		rule(in, iif, drop)
	}
	rule(post, []expr.Any{saddr, &expr.Lookup{SourceRegister: 1, SetName: k.set.Name, SetID: k.set.ID},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: up},
		&expr.Masq{},
	})
	if err := k.nft.Flush(); err != nil {
		k.table = nil // nothing was created: the transaction failed whole
		return fmt.Errorf("netstack: kernel: nftables table %s: %w", cfg.Table, err)
	}
	return nil
}

var privateNets = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("169.254.0.0/16"), cgnat,
}

// inNetns runs fn on an OS thread inside k's namespace; the thread is
// discarded afterwards (the goroutine exits still locked), so no other
// goroutine ever runs in a namespace it did not expect.
func (k *kernel) inNetns(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(k.ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

const ipForward = "/proc/sys/net/ipv4/ip_forward"

// enableForwarding switches ip_forward on and remembers the old value, so
// Close can put back a 0 it found (in a box that owns the host that is
// harmless; on a shared host it leaves the host as it was).
func (k *kernel) enableForwarding() error {
	return k.inNetns(func() error {
		b, err := os.ReadFile(ipForward)
		if err != nil {
			return fmt.Errorf("netstack: kernel: %w", err)
		}
		if v := strings.TrimSpace(string(b)); v != "1" {
			if err := os.WriteFile(ipForward, []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("netstack: kernel: ip_forward on: %w", err)
			}
			k.forwardWas = v
		}
		return nil
	})
}

func (k *kernel) readLoop() {
	defer k.wg.Done()
	n := k.dev.BatchSize()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	sizes := make([]int, n)
	for {
		cnt, err := k.dev.Read(bufs, sizes, 0)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, tun.ErrTooManySegments) {
				continue
			}
			k.st.log.Warn("TUN read", "err", err)
			return
		}
		for i := 0; i < cnt; i++ {
			p := bufs[i][:sizes[i]]
			if len(p) < ipv4HeaderLen || p[0]>>4 != 4 {
				continue
			}
			if s := k.st.lookup(netip.AddrFrom4([4]byte(p[16:20]))); s != nil {
				s.output(p)
			}
		}
	}
}

func (k *kernel) send(_ *Session, pkt []byte) {
	k.writeMu.Lock()
	defer k.writeMu.Unlock()
	n := copy(k.wbuf[tunHeadroom:], pkt)
	if _, err := k.dev.Write([][]byte{k.wbuf[:tunHeadroom+n]}, tunHeadroom); err != nil {
		k.st.log.Debug("TUN write", "err", err)
	}
}

func (k *kernel) attach(s *Session) error {
	cfg := k.st.cfg
	a := s.remote
	k.mu.Lock()
	err := k.nft.SetAddElements(k.set, []nftables.SetElement{{Key: a.AsSlice()}})
	if err == nil {
		err = k.nft.Flush()
	}
	k.mu.Unlock()
	if err != nil {
		return fmt.Errorf("nft add client: %w", err)
	}
	// The peer route pppd adds for ppp0 (remote/32 dev ppp0), src the gateway.
	if err := k.nl.RouteReplace(k.route(a)); err != nil {
		k.delElement(a)
		return fmt.Errorf("route %v dev %s: %w", a, cfg.TunName, err)
	}
	if k.inUplinkSubnet(a) {
		// pppd's proxyarp: answer ARP for the client on the uplink.
		if err := k.nl.NeighSet(k.proxyNeigh(a)); err != nil {
			k.st.log.Warn("proxy-ARP entry", "addr", a, "err", err)
		} else {
			k.mu.Lock()
			k.proxied[a] = struct{}{}
			k.mu.Unlock()
		}
	}
	return nil
}

func (k *kernel) route(a netip.Addr) *netlink.Route {
	return &netlink.Route{
		LinkIndex: k.link.Attrs().Index,
		Dst:       &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Src:       k.st.cfg.Gateway.AsSlice(),
		Scope:     netlink.SCOPE_LINK,
	}
}

func (k *kernel) proxyNeigh(a netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: k.uplink.Attrs().Index, Family: netlink.FAMILY_V4, Flags: netlink.NTF_PROXY, IP: a.AsSlice()}
}

func (k *kernel) delProxy(a netip.Addr) {
	if k.uplink == nil {
		return
	}
	_ = k.nl.NeighDel(k.proxyNeigh(a))
}

func (k *kernel) inUplinkSubnet(a netip.Addr) bool {
	addrs, err := k.nl.AddrList(k.uplink, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, ad := range addrs {
		if ad.IPNet != nil && ad.IPNet.Contains(a.AsSlice()) {
			return true
		}
	}
	return false
}

func (k *kernel) delElement(a netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.nft.SetDeleteElements(k.set, []nftables.SetElement{{Key: a.AsSlice()}}); err == nil {
		_ = k.nft.Flush()
	}
}

func (k *kernel) detach(s *Session) {
	a := s.remote
	_ = k.nl.RouteDel(k.route(a))
	k.delElement(a)
	k.mu.Lock()
	_, px := k.proxied[a]
	delete(k.proxied, a)
	k.mu.Unlock()
	if px {
		k.delProxy(a)
	}
}

func (k *kernel) close() error {
	return k.teardown()
}

// teardown removes everything newKernel made, whatever stage it reached.
func (k *kernel) teardown() error {
	var errs []error
	if k.dev != nil {
		errs = append(errs, k.dev.Close()) // a non-persistent TUN vanishes with its routes
		k.wg.Wait()
		if l, err := k.nl.LinkByName(k.st.cfg.TunName); err == nil {
			_ = k.nl.LinkDel(l) // usually gone already with the fd
		}
	}
	k.mu.Lock()
	for a := range k.proxied {
		k.delProxy(a)
	}
	k.proxied = map[netip.Addr]struct{}{}
	k.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.table != nil && k.nft != nil {
		k.nft.DelTable(k.table)
		if err := k.nft.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("delete nftables table: %w", err))
		}
		k.table = nil
	}
	if k.forwardWas != "" {
		was := k.forwardWas
		errs = append(errs, k.inNetns(func() error { return os.WriteFile(ipForward, []byte(was+"\n"), 0o644) }))
		k.forwardWas = ""
	}
	if k.nft != nil {
		errs = append(errs, k.nft.CloseLasting())
	}
	if k.nl != nil {
		k.nl.Close()
	}
	if k.ns.IsOpen() {
		errs = append(errs, k.ns.Close())
	}
	return errors.Join(errs...)
}
