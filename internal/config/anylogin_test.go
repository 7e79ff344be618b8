package config

import (
	"strings"
	"testing"

	"github.com/isp-box/isp-box/ppp"
)

// TestAnyLogin: the any-login rule is off unless written; written, it is
// a users entry with ppp.AnyLogin and check-config warns about it.
func TestAnyLogin(t *testing.T) {
	cfg, err := Parse("a.conf", []byte("[users]\ndial * \"dial\" *\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range cfg.Users {
		if u.Secret == ppp.AnyLogin {
			t.Fatal("any-login on by default")
		}
	}
	cfg, err = Parse("a.conf", []byte("[users]\ndial * \"dial\" *\nany-login *\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Users) != 2 || cfg.Users[1].Secret != ppp.AnyLogin || cfg.Users[1].Name != "*" {
		t.Fatalf("users %+v", cfg.Users)
	}
	warned := false
	for _, w := range cfg.Warnings {
		if w.Line == 3 && strings.Contains(w.Error(), "any-login") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no any-login warning: %v", cfg.Warnings)
	}
	if _, err := Parse("a.conf", []byte("[users]\nany-login 999.1.1.1\n"), nil); err == nil || !strings.Contains(err.Error(), "a.conf:2") {
		t.Errorf("bad address: %v", err)
	}
}
