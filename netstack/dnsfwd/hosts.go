package dnsfwd

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
)

// Hosts is a parsed hosts(5) file: lower-case names without the trailing dot
// mapped to their addresses, in file order.
type Hosts map[string][]netip.Addr

// ParseHosts reads hosts(5) text: an address, then the canonical name and
// aliases; '#' starts a comment. Lines that do not parse are skipped, as
// glibc and Go's resolver do. Zone-scoped IPv6 addresses are skipped too:
// they mean nothing to a dial-up client.
func ParseHosts(b []byte) Hosts {
	h := Hosts{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil || a.Zone() != "" {
			continue
		}
		a = a.Unmap()
		for _, name := range f[1:] {
			name = canonical(name)
			if name == "" || contains(h[name], a) {
				continue
			}
			h[name] = append(h[name], a)
		}
	}
	return h
}

func contains(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// canonical lower-cases a name and strips one trailing dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// Lookup returns the addresses of name (any case, with or without the
// trailing dot) and whether the name is in the file at all.
func (h Hosts) Lookup(name string) ([]netip.Addr, bool) {
	as, ok := h[canonical(name)]
	return as, ok
}
