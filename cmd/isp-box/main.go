// Command isp-box is the dial-up ISP in one binary: SIP PBX, modem answerer
// and PPP server (see the repository's ARCHITECTURE.md). `isp-box serve` runs the daemon;
// the other subcommands read a config file or talk to a running daemon over
// its control socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/isp-box/isp-box/internal/config"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3". When it
// is empty, the VCS revision recorded by the go command is used.
var version string

// Version returns the version string of this binary.
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified == "true" {
			rev += "-dirty"
		}
		return "devel-" + rev
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "devel"
}

// env is what a subcommand writes to; tests swap it.
type env struct {
	stdout, stderr io.Writer
}

// errorf prints one "isp-box: ..." line on stderr.
func (e *env) errorf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "isp-box: "+format+"\n", args...)
}

// command is one subcommand.
type command struct {
	name    string
	args    string // argument synopsis for the overview
	summary string
	run     func(ctx context.Context, e *env, args []string) int
}

func commands() []command {
	return []command{
		{"serve", "-c FILE", "run the box (SIP, modem lines, PPP, network) in the foreground", cmdServe},
		{"check-config", "FILE", "check a config file: print every problem, or a summary of what it sets up", cmdCheckConfig},
		{"doctor", "[-c FILE]", "check this machine against the config and say what to fix", cmdDoctor},
		{"status", "", "the daemon at a glance: version, uptime, counts, event bus", cmdStatus},
		{"peers", "", "SIP peers, like Asterisk's `sip show peers`", cmdPeers},
		{"peer", "NAME", "one SIP peer in detail, like `sip show peer NAME`", cmdPeer},
		{"registry", "", "the box's registrations with SIP providers, like `sip show registry`", cmdRegistry},
		{"calls", "", "live calls, like `core show channels`", cmdCalls},
		{"lines", "", "modem lines and their state", cmdLines},
		{"sessions", "", "live PPP sessions", cmdSessions},
		{"console", "", "stream live events, like `asterisk -rvvv`", cmdConsole},
		{"reload", "", "make the daemon re-read its config file (as SIGHUP does)", cmdReload},
		{"unban", "ADDR", "lift the ban on a SIP source address (status lists them)", cmdUnban},
		{"version", "", "print the version of this binary and of the daemon", cmdVersion},
		{"demo", "", "run a whole simulated dial-up setup on this machine", cmdDemo},
		{"sim-ata", "", "run the emulated two-line ATA on its own", cmdSimATA},
		{"man", "", "print the manual page isp-box(1) in roff", cmdMan},
		{"completion", "bash|zsh", "print the shell completion script", cmdCompletion},
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `isp-box replaces Asterisk + mgetty + pppd for a dial-up ISP: one binary,
one config file. Usage:

  isp-box COMMAND [flags] [args]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "isp-box COMMAND --help" for a command's flags. Commands that talk to a
running daemon take -s SOCKET; the default is the socket "isp-box serve" uses.
`)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the exit status: 0 success,
// 1 failure, 2 usage error.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		usage(e.stdout)
		return 0
	case "-v", "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, e, args[1:])
		}
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	sort.Strings(names)
	e.errorf("unknown command %q; commands: %s", name, strings.Join(names, ", "))
	return 2
}

// flagSet is a subcommand's flags with its usage text.
type flagSet struct {
	*flag.FlagSet
	e     *env
	usage string   // synopsis and explanation, printed before the flags
	args  []string // positional arguments, after parse
}

func newFlagSet(e *env, name, usage string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors and help are printed by parse
	return &flagSet{FlagSet: fs, e: e, usage: usage}
}

func (fs *flagSet) printUsage(w io.Writer) {
	fmt.Fprintln(w, strings.TrimSpace(fs.usage))
	var any bool
	fs.VisitAll(func(*flag.Flag) { any = true })
	if any {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// parse parses args and checks the number of positional arguments, which
// may come before, between or after the flags ("peer NAME --json"). It
// returns an exit status, or -1 to go on. --help prints the usage on
// stdout and exits 0; a bad flag prints the problem and the usage on stderr
// and exits 2.
func (fs *flagSet) parse(args []string, minArgs, maxArgs int) int {
	var err error
	for {
		if err = fs.Parse(args); err != nil {
			break
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		fs.args = append(fs.args, rest[0])
		args = rest[1:]
	}
	if errors.Is(err, flag.ErrHelp) {
		fs.printUsage(fs.e.stdout)
		return 0
	}
	if err == nil {
		switch n := len(fs.args); {
		case n < minArgs:
			err = fmt.Errorf("missing argument")
		case n > maxArgs:
			err = fmt.Errorf("unexpected argument %q", fs.args[maxArgs])
		}
	}
	if err != nil {
		fs.e.errorf("%s: %v", fs.Name(), err)
		fs.printUsage(fs.e.stderr)
		return 2
	}
	return -1
}

// loadConfig loads the config file of -c, which the command requires. It
// returns an exit status to stop with, or -1 to go on: 2 and the usage when
// path is empty; 1 when the file has problems, printed one a line, then
// hint if there is one.
func (fs *flagSet) loadConfig(path, hint string) (*config.Config, int) {
	if path == "" {
		fs.e.errorf("%s: -c FILE is required", fs.Name())
		fs.printUsage(fs.e.stderr)
		return nil, 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(fs.e.stderr, err)
		if hint != "" {
			fs.e.errorf("%s: %s", fs.Name(), hint)
		}
		return nil, 1
	}
	return cfg, -1
}
