package pppdvm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/isp-box/isp-box/internal/testutil"
)

// TestCpioExtractsWithGNUCpio checks writeCpio's archive with the real
// cpio(1): the files, their modes and the directories made for them.
func TestCpioExtractsWithGNUCpio(t *testing.T) {
	testutil.NeedProgram(t, "cpio", "cpio")
	files := []cpioFile{
		{Name: "/etc/isp-test/settings", Mode: 0o600, Data: []byte("isp_mode='direct'\n")},
		{Name: "etc/ppp/chat-script", Mode: 0o644, Data: []byte("'' ATZ\nOK ATDT88567682\n")},
		{Name: "/empty", Mode: 0o755},
		{Name: "/odd", Mode: 0o644, Data: []byte("abcde")}, // body needs padding
	}
	var b bytes.Buffer
	if err := writeCpio(&b, files); err != nil {
		t.Fatal(err)
	}
	if b.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", b.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	for _, f := range files {
		p := filepath.Join(dir, strings.TrimPrefix(f.Name, "/"))
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s: %q, want %q", f.Name, got, f.Data)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != os.FileMode(f.Mode) {
			t.Errorf("%s: mode %v, want %o", f.Name, st.Mode().Perm(), f.Mode)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "etc", "isp-test")); err != nil || !st.IsDir() {
		t.Errorf("etc/isp-test not made a directory: %v", err)
	}
}

func TestSettingsCpio(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		want    []string // substrings of the archive
		wantErr bool
	}{
		{name: "defaults", want: []string{"isp_mode='direct'", "isp_auth='any'", "isp_user='dial'", "isp_password='dial'", "isp_ping='3'", "isp_timeout='120'"}},
		{name: "quotes", opts: Options{User: "o'brien", Password: `a b"c`, Auth: AuthMSCHAPv2, Pings: -1},
			want: []string{`isp_user='o'\''brien'`, `isp_password='a b"c'`, "isp_auth='mschapv2'", "isp_ping='0'"}},
		{name: "chat", opts: Options{Mode: ModeChat, ChatScript: "'' AT\n", Extra: []string{"novj", "lcp-echo-interval 5"}},
			want: []string{"isp_mode='chat'", "etc/ppp/chat-script", "novj\nlcp-echo-interval 5\n"}},
		{name: "bad mode", opts: Options{Mode: "modem"}, wantErr: true},
		{name: "bad auth", opts: Options{Auth: "eap"}, wantErr: true},
		{name: "newline in option", opts: Options{Extra: []string{"novj\nnoauth"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := settingsCpio(tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !bytes.Contains(b, []byte(w)) {
					t.Errorf("archive lacks %q", w)
				}
			}
		})
	}
}

func TestAppendInitrdAligns(t *testing.T) {
	dir := t.TempDir()
	for n := range 4 {
		base := filepath.Join(dir, "base")
		if err := os.WriteFile(base, bytes.Repeat([]byte{0x1f}, 10+n), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out")
		if err := appendInitrd(out, base, []byte("070701")); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(out)
		i := bytes.Index(got, []byte("070701"))
		if i%4 != 0 || i < 10+n {
			t.Errorf("base of %d bytes: appended archive at %d, want the next multiple of 4", 10+n, i)
		}
	}
}
