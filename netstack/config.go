package netstack

import (
	"net/netip"
	"time"
)

// Mode selects how the box reaches the world.
type Mode string

const (
	// Userspace terminates clients' packets in a gVisor stack and forwards
	// TCP/UDP/ICMP through ordinary host sockets. No privileges. The default.
	Userspace Mode = "userspace"
	// Kernel routes through one TUN device with nftables masquerade. Needs
	// CAP_NET_ADMIN.
	Kernel Mode = "kernel"
)

// Config is the IP side of the box.
type Config struct {
	Mode    Mode
	Gateway netip.Addr   // the box's address towards clients; 192.168.32.1
	Pool    netip.Prefix // addresses for lines without a fixed remote; 192.168.32.0/24
	DNS     []netip.Addr // DNS handed to clients when ppp sets none (userspace: the gateway's forwarder)
	Isolate bool         // drop traffic between clients
	MTU     int          // PPP MTU, for MSS clamping; 1500
	Uplink  string       // kernel: uplink interface for masquerade; "" = the default route's
	TunName string       // kernel: "ispbox0"
	Table   string       // kernel: nftables table name; "isp-box"

	// HostLoopback (userspace): a client's TCP/UDP connection to the gateway
	// address on any port but DNS is forwarded to the host's 127.0.0.1 on
	// the same port, as QEMU's and slirp4netns's 10.0.2.2 do. Off by default:
	// dial-in users should not reach services the host keeps on loopback.
	HostLoopback bool
	// BlockPrivate drops clients' traffic to private, shared (100.64/10) and
	// link-local destinations (the host's LAN, 169.254.169.254), but not to
	// other clients (that is Isolate) nor to Allow and the DNS servers
	// handed out. On by default: strangers dial in (the seed's line needs no
	// login), and the seed's MASQUERADE rule gave them the whole LAN. In
	// kernel mode it filters forwarded traffic.
	BlockPrivate bool
	// BlockHost refuses clients' connections to the host's own addresses
	// (other than the gateway's DNS and HostLoopback), which would reach
	// every service the host listens on at 0.0.0.0. On by default. In
	// kernel mode it drops what clients send to the box itself but for
	// ICMP, replies, and Allow.
	BlockHost bool
	// Allow lists destinations clients may reach whatever BlockPrivate and
	// BlockHost say (a LAN printer, a host service meant for them).
	Allow []netip.Prefix
	// DNSUpstream (userspace): servers the gateway's DNS forwarder relays to;
	// empty = the nameservers of /etc/resolv.conf.
	DNSUpstream []netip.AddrPort
	// HostsFile (userspace): names the DNS forwarder answers itself;
	// "" = /etc/hosts, "-" = none.
	HostsFile string
	// UDPTimeout (userspace): a forwarded UDP flow with no traffic for this
	// long is closed; 0 = 60 s.
	UDPTimeout time.Duration
	// TCPTimeout (userspace): a forwarded TCP connection with no data either
	// way for this long is closed; 0 = 1 h.
	TCPTimeout time.Duration
	// MaxFlows (userspace) bounds the forwarded TCP connections and UDP
	// flows of all clients together (each holds a host socket and two
	// goroutines), as nf_conntrack_max does; 0 = 4096.
	MaxFlows int
	// MaxSessionFlows (userspace) bounds one client's; 0 = DefaultMaxSessionFlows.
	MaxSessionFlows int
}

// Flow limits when Config leaves them 0: a Raspberry Pi's worth of flows
// (about 20 KB of memory and one descriptor each for UDP), and for one dial-up
// user more than a browser opens.
const (
	DefaultMaxFlows        = 1024
	DefaultMaxSessionFlows = 128
)

// DefaultConfig returns the userspace defaults.
func DefaultConfig() Config {
	return Config{
		Mode:    Userspace,
		Gateway: netip.MustParseAddr("192.168.32.1"),
		Pool:    netip.MustParsePrefix("192.168.32.0/24"),
		MTU:     1500,
		TunName: "ispbox0",

		BlockPrivate: true,
		BlockHost:    true,
		Table:        "isp-box",
	}
}
