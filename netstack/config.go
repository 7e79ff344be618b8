package netstack

import "net/netip"

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
