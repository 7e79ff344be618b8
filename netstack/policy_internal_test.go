package netstack

import (
	"net/netip"
	"testing"
)

func TestPolicy(t *testing.T) {
	tests := []struct {
		dst          string
		blockPrivate bool
		want         string
	}{
		{"93.184.216.34", false, ""},
		{"93.184.216.34", true, ""},
		{"127.0.0.1", false, ReasonNoRoute}, // martian on the wire (RFC 1122 §3.2.1.3)
		{"127.8.9.10", false, ReasonNoRoute},
		{"0.0.0.0", false, ReasonNoRoute},
		{"224.0.0.251", false, ReasonNoRoute},
		{"255.255.255.255", false, ReasonNoRoute},
		{"240.0.0.1", false, ReasonNoRoute},
		{"192.168.32.77", false, ReasonNoRoute}, // pool address nobody holds
		{"192.168.32.255", false, ReasonNoRoute},
		{"10.1.2.3", false, ""},
		{"10.1.2.3", true, ReasonForbidden},
		{"172.20.0.1", true, ReasonForbidden},
		{"192.168.1.1", true, ReasonForbidden},
		{"169.254.169.254", true, ReasonForbidden}, // cloud metadata
		{"100.64.0.1", true, ReasonForbidden},
		{"172.32.0.1", true, ""},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.BlockPrivate = tt.blockPrivate
		s := &Stack{cfg: cfg}
		if got := s.policy(netip.MustParseAddr(tt.dst)); got != tt.want {
			t.Errorf("policy(%s, blockPrivate=%v) = %q, want %q", tt.dst, tt.blockPrivate, got, tt.want)
		}
	}
}
