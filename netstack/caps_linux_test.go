package netstack

import (
	"context"
	"os"
	"strings"
	"testing"
)

func TestHasCap(t *testing.T) {
	tests := []struct {
		status string
		want   bool
		err    bool
	}{
		{"Name:\tx\nCapEff:\t000001ffffffffff\n", true, false}, // root
		{"CapEff:\t0000000000001000\n", true, false},           // just CAP_NET_ADMIN
		{"CapEff:\t0000000000000000\n", false, false},          // ordinary user
		{"CapEff:\t0000000000002000\n", false, false},          // CAP_NET_RAW only
		{"CapInh:\t0\n", false, true},
		{"CapEff:\tzz\n", false, true},
	}
	for _, tt := range tests {
		got, err := hasCap(tt.status, capNetAdmin)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("hasCap(%q) = %v, %v; want %v, err %v", tt.status, got, err, tt.want, tt.err)
		}
	}
}

func TestKernelWithoutCapability(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: the capability is there (TestHasCap covers the check)")
	}
	cfg := DefaultConfig()
	cfg.Mode = Kernel
	_, err := New(context.Background(), cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "CAP_NET_ADMIN") || !strings.Contains(err.Error(), "userspace") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %v: want one line naming CAP_NET_ADMIN and userspace mode", err)
	}
}
