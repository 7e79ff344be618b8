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
	// other clients (that is Isolate). Off by default, like the seed's
	// MASQUERADE rule, which let clients reach the LAN. In kernel mode it
	// filters forwarded traffic only; what clients may reach on the box
	// itself is the host firewall's business.
	BlockPrivate bool
	// DNSUpstream (userspace): servers the gateway's DNS forwarder relays to;
	// empty = the nameservers of /etc/resolv.conf.
	DNSUpstream []netip.AddrPort
	// HostsFile (userspace): names the DNS forwarder answers itself;
	// "" = /etc/hosts, "-" = none.
	HostsFile string
	// UDPTimeout (userspace): a forwarded UDP flow with no traffic for this
	// long is closed; 0 = 60 s.
	UDPTimeout time.Duration
}

// DefaultConfig returns the userspace defaults.
func DefaultConfig() Config {
	return Config{
		Mode:    Userspace,
		Gateway: netip.MustParseAddr("192.168.32.1"),
		Pool:    netip.MustParsePrefix("192.168.32.0/24"),
		MTU:     1500,
		TunName: "ispbox0",
		Table:   "isp-box",
	}
}
