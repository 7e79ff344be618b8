package pppdvm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/isp-box/isp-box/internal/readahead"
)

// Modes of Options.Mode.
const (
	// ModeDirect: pppd starts PPP on the serial line at once (a null-modem
	// cable to the server).
	ModeDirect = "direct"
	// ModeChat: pppd first runs chat, which dials through an AT modem on the
	// line: ABORT BUSY, '' ATZ, OK ATDT88567682, CONNECT ''.
	ModeChat = "chat"
)

// Authentication protocols of Options.Auth: the one pppd accepts (it
// refuses the others). Empty accepts any the server asks for.
const (
	AuthPAP      = "pap"
	AuthCHAP     = "chap"     // CHAP-MD5
	AuthMSCHAP   = "mschap"   // MS-CHAPv1
	AuthMSCHAPv2 = "mschapv2" // MS-CHAPv2
)

// Options configure one VM run: one pppd call.
type Options struct {
	Mode     string // ModeDirect (default) or ModeChat
	User     string // pppd's user; default "dial"
	Password string // pppd's password; default "dial"
	Auth     string // AuthPAP, AuthCHAP, AuthMSCHAP, AuthMSCHAPv2 or "" (any)
	// Extra holds more pppd options, one per element, written as lines of
	// pppd's options file (e.g. "novj", "lcp-echo-interval 5").
	Extra []string
	// ChatScript replaces the built-in chat script (ModeChat).
	ChatScript string
	// Pings is how many echo requests the guest sends to the peer once IPCP
	// is up; 0 means 3, negative means none.
	Pings int
	// IPTimeout bounds the wait for IPCP in the guest; 0 means 120 s.
	IPTimeout time.Duration
	// Log receives the guest's console (kernel, /init, pppd's debug log)
	// as it is printed; nil discards it. Wait's Result keeps the tail.
	Log io.Writer
	// MemoryMB is the guest's memory; 0 means 192 (128 is the minimum).
	MemoryMB int

	// SerialTCP, when set (host:port), has qemu itself carry ttyS1 over TCP
	// as an emulator's serial port does: qemu connects to that address as a
	// client when it starts, so something must listen there already (a TCP
	// line of the box). Raw, it is `-serial tcp:HOST:PORT`; with
	// SerialTelnet it is `-chardev socket,host=,port=,telnet=on`. Serial,
	// WaitSerial and the bridges are then not available.
	//
	// qemu 7.2 (and later: chardev/char-socket.c sets do_telnetopt for
	// server=on only) speaks no Telnet as a client: telnet=on in client
	// mode sends no negotiation, does not double IAC (0xff) on the way out
	// and passes what it receives to the guest unparsed. It is a raw stream
	// under a Telnet name, which a Telnet line of the box must cope with.
	SerialTCP    string
	SerialTelnet bool

	// HTTPURL, when set, is fetched by the guest with busybox wget once
	// IPCP is up (after the pings): Result.HTTP says whether it worked,
	// HTTPBytes and HTTPSHA256 what came. The guest has no DNS: use an
	// address.
	HTTPURL string
}

// VM is one running qemu with pppd inside.
type VM struct {
	cmd     *exec.Cmd
	serial  *gatedConn
	dir     string
	started time.Time

	consoleDone chan struct{} // closed when the console reader ends
	exited      chan struct{} // closed when qemu has been reaped
	waitErr     error         // qemu's exit, valid after exited

	mu      sync.Mutex
	console bytes.Buffer // the whole console, capped at consoleCap
	result  *Result      // the result line, once seen
	resAt   time.Time

	closeOnce sync.Once
}

const consoleCap = 4 << 20

// CacheDir is where tools/pppd-vm/build.sh puts the VM: $ISPBOX_VM_CACHE,
// else /var/cache/isp-box-vm for root, else .cache/pppd-vm in the
// repository.
func CacheDir() string {
	if d := os.Getenv("ISPBOX_VM_CACHE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/isp-box-vm"
	}
	if dir := toolsDir(); dir != "" {
		return filepath.Join(dir, "..", "..", ".cache", "pppd-vm")
	}
	return filepath.Join(".cache", "pppd-vm")
}

// toolsDir finds tools/pppd-vm from the working directory upwards (tests
// run in their package's directory); "" if it is not there.
func toolsDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := dir; ; d = filepath.Dir(d) {
		t := filepath.Join(d, "tools", "pppd-vm")
		if _, err := os.Stat(filepath.Join(t, "build.sh")); err == nil {
			return t
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// inputsHash is build.sh's stamp for the sources in dir: the SHA-256 of
// build.sh followed by the files under guest/ in byte order of their paths
// (as `find guest -type f -print0 | LC_ALL=C sort -z | xargs -0 cat`).
func inputsHash(dir string) (string, error) {
	h := sha256.New()
	b, err := os.ReadFile(filepath.Join(dir, "build.sh"))
	if err != nil {
		return "", err
	}
	h.Write(b)
	var files []string
	err = filepath.WalkDir(filepath.Join(dir, "guest"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// RequireEnv names the environment variable that, when set to anything
// non-empty, turns the VM tests' skip (no qemu, no built cache) into a
// failure: `make e2e-pppd` and CI set it so that the tests cannot pass by
// not running.
const RequireEnv = "ISPBOX_REQUIRE_PPPD_VM"

// qemuBinary is the emulator Start runs; TCG is used (KVM aborts here).
const qemuBinary = "qemu-system-x86_64"

// BuildDir is where the VM built from this checkout's tools/pppd-vm lies:
// builds/HASH under CacheDir, HASH being build.sh's stamp of its inputs.
// Outside a checkout it is CacheDir itself (a cache laid out flat).
func BuildDir() (string, error) {
	tools := toolsDir()
	if tools == "" {
		return CacheDir(), nil
	}
	h, err := inputsHash(tools)
	if err != nil {
		return "", fmt.Errorf("pppdvm: hashing %s: %w", tools, err)
	}
	return filepath.Join(CacheDir(), "builds", h), nil
}

// Available reports whether a VM can be started: qemu is installed and the
// cache holds a kernel and initramfs built from this checkout's sources (a
// guest/init changed since would otherwise be silently not tested). Tests
// skip when it is not nil.
func Available() error {
	if _, err := exec.LookPath(qemuBinary); err != nil {
		return fmt.Errorf("pppdvm: %s not found (apt-get install qemu-system-x86): %w", qemuBinary, err)
	}
	dir, err := BuildDir()
	if err != nil {
		return err
	}
	for _, f := range []string{"vmlinuz", "initrd.cpio.gz"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("pppdvm: no VM built from this checkout's tools/pppd-vm (no %s in %s): run `make pppd-vm` (tools/pppd-vm/build.sh): %w", f, dir, err)
		}
	}
	return nil
}

// Start boots a VM whose pppd makes one call as opts says. The VM ends by
// itself after the call (see Wait), when ctx is done, or on Close; the
// caller must call Close.
func Start(ctx context.Context, opts Options) (*VM, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	settings, err := settingsCpio(opts)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pppdvm-")
	if err != nil {
		return nil, fmt.Errorf("pppdvm: %w", err)
	}
	v := &VM{dir: dir, consoleDone: make(chan struct{}), exited: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	build, err := BuildDir()
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(dir, "initrd")
	if err := appendInitrd(initrd, filepath.Join(build, "initrd.cpio.gz"), settings); err != nil {
		return nil, err
	}

	mem := opts.MemoryMB
	if mem == 0 {
		mem = 192
	}
	args := []string{
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-nic", "none",
		"-no-reboot",
		"-kernel", filepath.Join(build, "vmlinuz"),
		"-initrd", initrd,
		// panic=-1 turns a guest panic into a reboot, which -no-reboot
		// turns into qemu's exit. no_timer_check: under TCG on a loaded
		// host the kernel's boot-time test of the IO-APIC timer IRQ
		// (check_timer, arch/x86/kernel/apic/io_apic.c) can see too few
		// ticks and panic "IO-APIC + timer doesn't work!"; the emulated
		// timer is fine, so skip the test, as cloud and Vagrant images do.
		"-append", "console=ttyS0,115200 panic=-1 loglevel=5 no_timer_check",
		"-serial", "stdio", // ttyS0: the console, read from qemu's stdout
	}
	if opts.SerialTCP != "" {
		host, port, err := net.SplitHostPort(opts.SerialTCP)
		if err != nil || strings.ContainsAny(opts.SerialTCP, ",=") {
			return nil, fmt.Errorf("pppdvm: SerialTCP %q is not host:port", opts.SerialTCP)
		}
		if opts.SerialTelnet {
			args = append(args, "-chardev", "socket,id=s1,host="+host+",port="+port+",server=off,telnet=on",
				"-serial", "chardev:s1")
		} else {
			args = append(args, "-serial", "tcp:"+opts.SerialTCP)
		}
		if err := v.start(ctx, args, nil, opts.Log); err != nil {
			return nil, err
		}
		ok = true
		return v, nil
	}

	// ttyS1 is one end of a socketpair: the guest's bytes wait in the
	// socket for the test however late it reads, and no path is polled.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pppdvm: socketpair: %w", err)
	}
	hostEnd := os.NewFile(uintptr(fds[0]), "pppdvm-serial")
	guestEnd := os.NewFile(uintptr(fds[1]), "pppdvm-serial-guest")
	defer guestEnd.Close()
	c, err := net.FileConn(hostEnd)
	hostEnd.Close() // FileConn dup'ed it
	if err != nil {
		return nil, fmt.Errorf("pppdvm: serial socket: %w", err)
	}
	v.serial = &gatedConn{UnixConn: c.(*net.UnixConn)}
	args = append(args,
		"-chardev", "socket,id=s1,fd=3", // ExtraFiles[0]
		"-serial", "chardev:s1", // ttyS1: pppd's line
	)
	if err := v.start(ctx, args, guestEnd, opts.Log); err != nil {
		v.serial.UnixConn.Close()
		return nil, err
	}
	ok = true
	return v, nil
}

// start runs qemu with args (and guestEnd as its fd 3 if not nil).
func (v *VM) start(ctx context.Context, args []string, guestEnd *os.File, log io.Writer) error {
	v.cmd = exec.CommandContext(ctx, qemuBinary, args...)
	if guestEnd != nil {
		v.cmd.ExtraFiles = []*os.File{guestEnd}
	}
	v.cmd.Stdin = nil // /dev/null
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pppdvm: %w", err)
	}
	v.cmd.Stdout = pw
	v.cmd.Stderr = pw
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("pppdvm: starting %s: %w", qemuBinary, err)
	}
	pw.Close()
	go v.readConsole(pr, log)
	go func() {
		v.waitErr = v.cmd.Wait()
		close(v.exited)
	}()
	return nil
}

// settingsCpio is the per-VM archive appended to the initramfs: the
// settings /init sources, pppd's extra options and the chat script.
func settingsCpio(opts Options) ([]byte, error) {
	mode := opts.Mode
	if mode == "" {
		mode = ModeDirect
	}
	if mode != ModeDirect && mode != ModeChat {
		return nil, fmt.Errorf("pppdvm: mode %q is neither %q nor %q", mode, ModeDirect, ModeChat)
	}
	auth := opts.Auth
	switch auth {
	case "":
		auth = "any"
	case AuthPAP, AuthCHAP, AuthMSCHAP, AuthMSCHAPv2:
	default:
		return nil, fmt.Errorf("pppdvm: unknown auth %q", auth)
	}
	user, password := opts.User, opts.Password
	if user == "" {
		user = "dial"
	}
	if password == "" {
		password = "dial"
	}
	pings := opts.Pings
	switch {
	case pings == 0:
		pings = 3
	case pings < 0:
		pings = 0
	}
	timeout := 120
	if opts.IPTimeout > 0 {
		timeout = int((opts.IPTimeout + time.Second - 1) / time.Second)
	}
	if strings.ContainsAny(opts.HTTPURL, " \t\n\r") {
		return nil, fmt.Errorf("pppdvm: HTTPURL %q has white space", opts.HTTPURL)
	}
	var s strings.Builder
	for _, kv := range [][2]string{
		{"isp_mode", mode}, {"isp_auth", auth}, {"isp_user", user}, {"isp_password", password},
		{"isp_ping", strconv.Itoa(pings)}, {"isp_timeout", strconv.Itoa(timeout)},
		{"isp_http", opts.HTTPURL},
	} {
		fmt.Fprintf(&s, "%s=%s\n", kv[0], shellQuote(kv[1]))
	}
	files := []cpioFile{{Name: "/etc/isp-test/settings", Mode: 0o600, Data: []byte(s.String())}}
	if len(opts.Extra) > 0 {
		for _, o := range opts.Extra {
			if strings.ContainsAny(o, "\n\r") {
				return nil, fmt.Errorf("pppdvm: pppd option %q has a line break", o)
			}
		}
		files = append(files, cpioFile{Name: "/etc/isp-test/pppd-extra", Mode: 0o600,
			Data: []byte(strings.Join(opts.Extra, "\n") + "\n")})
	}
	if opts.ChatScript != "" {
		files = append(files, cpioFile{Name: "/etc/ppp/chat-script", Mode: 0o644, Data: []byte(opts.ChatScript)})
	}
	var b bytes.Buffer
	if err := writeCpio(&b, files); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// shellQuote quotes s as one word for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// appendInitrd writes base, padded with NULs to a 4-byte boundary (the
// kernel looks for a following archive only at aligned offsets), then extra.
func appendInitrd(dst, base string, extra []byte) error {
	in, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("pppdvm: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("pppdvm: %w", err)
	}
	n, err := io.Copy(out, in)
	if err == nil {
		_, err = out.Write(make([]byte, (4-n%4)%4))
	}
	if err == nil {
		_, err = out.Write(extra)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pppdvm: writing %s: %w", dst, err)
	}
	return nil
}

// readConsole copies the guest console to log, keeps it, and catches the
// result line.
func (v *VM) readConsole(r io.ReadCloser, log io.Writer) {
	defer close(v.consoleDone)
	defer r.Close()
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if log != nil {
				io.WriteString(log, line)
			}
			v.mu.Lock()
			if v.console.Len() < consoleCap {
				v.console.WriteString(line)
			}
			if i := strings.Index(line, resultPrefix); i >= 0 && v.result == nil {
				if res, perr := ParseResult(line[i:]); perr == nil {
					v.result, v.resAt = &res, time.Now()
				}
			}
			v.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// Serial is the host side of the guest's ttyS1: the byte stream pppd (or
// chat) reads and writes. Serve it as a direct line (a PPP server reads
// and writes it), or use BridgeToPTY; not both. Closing it leaves the
// guest's line silent (qemu's 16550 keeps carrier, so pppd sees no hang-up).
//
// What is written before the guest has sent its first byte is dropped, as
// on a real line to a port nobody has open: qemu would instead hold it and
// hand it to the tty the moment pppd opens it, still in cooked mode, and
// the tty would echo it back (a server's early LCP Configure-Requests came
// back as the "peer's" and broke negotiation). pppd writes only once its
// tty is raw, so its first byte opens the gate.
//
// With Options.SerialTCP there is no such stream here (qemu carries it):
// Serial returns nil.
func (v *VM) Serial() net.Conn {
	if v.serial == nil {
		return nil
	}
	return v.serial
}

// WaitSerial blocks until the guest has written its first byte on the
// serial line (pppd has its tty raw and sent its first LCP
// Configure-Request, or chat its first command), and keeps what it read
// for the next Read of Serial. Start a direct-line server after it, as a
// line manager starts PPP on CONNECT: a server started at boot sends its
// Configure-Requests into a line nobody listens to yet and, on a loaded
// machine where the guest boots for more than 30 s, gives up before pppd
// runs. It returns an error if ctx ends or the guest dies first.
func (v *VM) WaitSerial(ctx context.Context) error {
	if v.serial == nil {
		return errNoSerial
	}
	return v.serial.waitFirst(ctx)
}

// gatedConn drops writes until the first byte has been read, and closes
// only logically: see Close.
type gatedConn struct {
	*net.UnixConn
	open    atomic.Bool
	closed  atomic.Bool
	dropped atomic.Int64 // bytes dropped before the gate opened

	pending readahead.Buffer // read by waitFirst, not yet by Read
}

func (c *gatedConn) Read(p []byte) (int, error) {
	if n, ok := c.pending.Read(p); ok {
		return n, nil
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.UnixConn.Read(p)
	if n > 0 {
		c.open.Store(true)
	}
	if err != nil && c.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (c *gatedConn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if !c.open.Load() {
		c.dropped.Add(int64(len(p)))
		return len(p), nil
	}
	return c.UnixConn.Write(p)
}

// Close ends the host's use of the line: Read and Write fail from now on,
// and a blocked Read returns. The socket itself stays open until VM.Close,
// so that what was written last (a server's Terminate-Ack) still reaches
// the guest, as a UART drains its transmit buffer on close: qemu drops the
// bytes it has not read yet when the socket hangs up.
func (c *gatedConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.UnixConn.SetReadDeadline(time.Unix(1, 0))
}

// waitFirst reads the guest's first bytes into pending. It must not run
// concurrently with Read.
func (c *gatedConn) waitFirst(ctx context.Context) error {
	if c.open.Load() {
		return nil
	}
	// A past deadline unblocks the read when ctx ends.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.UnixConn.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	buf := make([]byte, 4096)
	n, err := c.UnixConn.Read(buf)
	if !stop() {
		<-fired // then undo its deadline: the conn stays usable
		c.UnixConn.SetReadDeadline(time.Time{})
	}
	if n > 0 {
		c.pending.Append(buf[:n])
		c.open.Store(true)
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("pppdvm: waiting for the guest on the serial line: %w", ctx.Err())
	}
	return fmt.Errorf("pppdvm: waiting for the guest on the serial line: %w", err)
}

// Started is when Start launched qemu.
func (v *VM) Started() time.Time { return v.started }

// Console returns the guest console printed so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// errNoSerial: the VM's serial line is carried by qemu (Options.SerialTCP).
var errNoSerial = errors.New("pppdvm: ttyS1 is carried by qemu over TCP (SerialTCP): no serial stream here")

// ErrNoResult is returned by Wait when the guest ended without a result line.
var ErrNoResult = errors.New("pppdvm: the guest printed no result line")

// Wait waits for the guest to power off (or ctx of Start to end) and returns
// its result. The error is nil only if the guest reported "ok" (IPCP came
// up); Result.Console then and otherwise holds the console's tail. Wait
// does not close the VM.
func (v *VM) Wait() (Result, error) {
	<-v.exited
	<-v.consoleDone
	v.mu.Lock()
	defer v.mu.Unlock()
	tail := tailLines(v.console.String(), 80)
	if v.result == nil {
		return Result{Console: tail, Elapsed: time.Since(v.started)},
			fmt.Errorf("%w (qemu: %w); console tail:\n%s", ErrNoResult, v.waitErr, tail)
	}
	r := *v.result
	r.Elapsed = v.resAt.Sub(v.started)
	r.Console = tail
	if !r.OK {
		return r, fmt.Errorf("pppdvm: the call failed: %s; console tail:\n%s", r.Line(), tail)
	}
	return r, nil
}

// Done is closed when qemu has exited.
func (v *VM) Done() <-chan struct{} { return v.exited }

// Close kills qemu if it still runs, closes the serial socket and removes
// the VM's files. It is safe to call more than once.
func (v *VM) Close() error {
	v.closeOnce.Do(func() {
		select {
		case <-v.exited:
		default:
			v.cmd.Process.Kill()
			<-v.exited
		}
		<-v.consoleDone
		if v.serial != nil {
			v.serial.Close()
			v.serial.UnixConn.Close()
		}
		os.RemoveAll(v.dir)
	})
	return nil
}

func tailLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	i := len(s)
	for ; n > 0 && i > 0; n-- {
		i = strings.LastIndexByte(s[:i], '\n')
		if i < 0 {
			return s + "\n"
		}
	}
	return s[i+1:] + "\n"
}
