package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// parseBool accepts what Asterisk's ast_true/ast_false and mgetty accept.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "y", "true", "t", "on", "1":
		return true, true
	case "no", "n", "false", "f", "off", "0":
		return false, true
	}
	return false, false
}

const boolWords = "yes or no"

// parseInt parses a decimal integer in [lo, hi].
func parseInt(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is out of range %d..%d", n, lo, hi)
	}
	return n, nil
}

// parseSeconds parses a whole number of seconds in [lo, hi].
func parseSeconds(s string, lo, hi int) (time.Duration, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d seconds is out of range %d..%d", n, lo, hi)
	}
	return time.Duration(n) * time.Second, nil
}

// parsePort parses a UDP/TCP port number.
func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number 1..65535", s)
	}
	return n, nil
}

// parseAddr parses an IP address (v4 or v6).
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a, nil
}

// parseAddr4 parses an IPv4 address.
func parseAddr4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address", s)
	}
	return a, nil
}

// parseNetmask parses a dotted IPv4 netmask and returns its prefix length.
func parseNetmask(s string) (netip.Addr, int, error) {
	a, err := parseAddr4(s)
	if err != nil {
		return a, 0, err
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for v&0x80000000 != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return a, 0, fmt.Errorf("%q is not a netmask (its one bits are not contiguous)", s)
	}
	return a, bits, nil
}

// parseACL parses an Asterisk permit/deny value: an address, a CIDR
// prefix, or address/dotted-netmask. Host bits are masked as Asterisk does.
func parseACL(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("%q is not an address, a prefix like 192.168.0.0/24, or address/netmask", s)
	addrPart, maskPart, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, bad
	}
	bits := a.BitLen()
	if hasMask {
		if strings.Contains(maskPart, ".") {
			if !a.Is4() {
				return netip.Prefix{}, bad
			}
			_, n, err := parseNetmask(maskPart)
			if err != nil {
				return netip.Prefix{}, bad
			}
			bits = n
		} else {
			n, err := strconv.Atoi(maskPart)
			if err != nil || n < 0 || n > a.BitLen() {
				return netip.Prefix{}, bad
			}
			bits = n
		}
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// parsePrefix parses a CIDR network such as 192.168.32.0/24.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network like 192.168.32.0/24", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; the network is %s", s, p.Masked())
	}
	return p, nil
}

// dteSpeeds are the speeds a Linux serial port can be set to (termios
// Bxxx constants), the only ones mgetty's `speed` and pppd accept.
var dteSpeeds = []int{50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200,
	38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000,
	2000000, 2500000, 3000000, 3500000, 4000000}

func parseSpeed(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err == nil {
		for _, v := range dteSpeeds {
			if v == n {
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("%q is not a serial port speed (300, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, ...)", s)
}

// splitList splits a comma (or space) separated list, dropping empties.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}
