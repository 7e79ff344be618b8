package console

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isp-box/isp-box/internal/testutil"
)

func TestDefaultSocketPath(t *testing.T) {
	tests := []struct {
		uid  int
		xdg  string
		want string
	}{
		{0, "/run/user/0", "/run/isp-box/isp-box.sock"},
		{1000, "/run/user/1000", "/run/user/1000/isp-box/isp-box.sock"},
		{1000, "", filepath.Join(os.TempDir(), "isp-box-1000", "isp-box.sock")},
	}
	for _, tt := range tests {
		if got := defaultSocketPath(tt.uid, tt.xdg); got != tt.want {
			t.Errorf("defaultSocketPath(%d, %q) = %q, want %q", tt.uid, tt.xdg, got, tt.want)
		}
	}
}

func TestListen(t *testing.T) {
	dir := testutil.ShortDir(t)
	sock := filepath.Join(dir, "a", "b", SocketName)
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != SocketMode {
		t.Errorf("socket mode %v, want %v", fi.Mode().Perm(), os.FileMode(SocketMode))
	}
	if di, _ := os.Stat(filepath.Dir(sock)); di.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v, want 0750", di.Mode().Perm())
	}
	// Someone answers: Listen refuses and leaves the socket alone.
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Errorf("Listen on a live socket: %v", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("live socket removed: %v", err)
	}
	// The daemon died without removing its socket: Listen takes it over.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not left for the test: %v", err)
	}
	l2, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l2.Close()

	// A file that is not a socket is never removed.
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a plain file: %v", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep" {
		t.Error("plain file was touched")
	}
}

// Under systemd's RuntimeDirectory= the daemon's socket is in it, whoever
// the service runs as; the CLI without -s finds this user's daemon first
// and the packaged service's socket otherwise (issue 13: an admin had to
// pass -s to every command).
func TestSocketPathSystemd(t *testing.T) {
	t.Setenv("RUNTIME_DIRECTORY", "/run/isp-box")
	if got := DefaultSocketPath(); got != ServiceSocketPath {
		t.Errorf("with RUNTIME_DIRECTORY: %q, want %q", got, ServiceSocketPath)
	}
	dir := t.TempDir()
	t.Setenv("RUNTIME_DIRECTORY", dir+":/other")
	own := filepath.Join(dir, SocketName)
	if got := DefaultSocketPath(); got != own {
		t.Errorf("with a RUNTIME_DIRECTORY list: %q, want %q", got, own)
	}
	// No socket of our own: the service's if there, else ours (named in the error).
	if _, err := os.Stat(ServiceSocketPath); err != nil {
		if got := ClientSocketPath(); got != own {
			t.Errorf("no socket anywhere: %q, want our own %q", got, own)
		}
	}
	l, err := Listen(own)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := ClientSocketPath(); got != own {
		t.Errorf("own daemon running: %q, want %q", got, own)
	}
}
