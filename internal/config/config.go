package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"io/fs"

	"github.com/isp-box/isp-box/internal/hostcheck"
	"github.com/isp-box/isp-box/internal/radius"
	"github.com/isp-box/isp-box/modem"
	"github.com/isp-box/isp-box/netstack"
	"github.com/isp-box/isp-box/pbx"
	"github.com/isp-box/isp-box/pbx/dialplan"
	"github.com/isp-box/isp-box/ppp"
)

// Config is one isp-box config file, mapped onto the components' Config
// types and validated.
type Config struct {
	Box   Box
	PBX   pbx.Config
	Lines []Line          // modem lines, in the order of their `port` / [line] in the file
	PPP   ppp.Config      // [ppp]: pppd's /etc/ppp/options over pppd's defaults
	Users []ppp.User      // [users]: pap-secrets
	Net   netstack.Config // [network]
	// Radius is [radius]: AAA servers for PPP users and accounting.
	Radius radius.Config `json:",omitzero"`
	// Files is every file read (the main file first, then includes in the
	// order read): what SIGHUP re-reads and what a file watcher watches.
	Files []string
	// Warnings are accepted-but-ignored keys and similar; they do not fail
	// the load. check-config prints them.
	Warnings []*Error
}

// Box is the box's own settings ([box]).
type Box struct {
	Console  string     // console: control socket path; "" = the default (/run/isp-box/isp-box.sock as root, else under $XDG_RUNTIME_DIR)
	Database string     // database: SQLite file; "" = the default chosen by serve
	LogLevel slog.Level // log-level: debug, info, warn, error; info
	// MemoryLimit is memory-limit: Go's soft memory limit in bytes, so a
	// flood makes the collector work harder before the box outgrows a
	// small board; DefaultMemoryLimit when unset, 0 = none.
	MemoryLimit int64
	// Metrics is metrics: where Prometheus' /metrics is served; zero = off.
	Metrics netip.AddrPort
	File    string // where [box] starts, if present
	Line    int
}

// Line is one modem line: its port (mgetty's keys, the box's own keys and
// pppd's serial options) and the PPP options for calls it answers.
type Line struct {
	Modem modem.LineConfig
	// PPP is ppp.DefaultConfig overlaid by [ppp] then [ppp NAME], the
	// order pppd reads /etc/ppp/options then options.NAME.
	PPP ppp.Config
}

// Load reads the config file at path and the files it includes, maps and
// validates it. The error, if any, is an ErrorList with every problem.
func Load(path string) (*Config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		msg := "cannot read config: " + strings.TrimPrefix(err.Error(), "open "+path+": ")
		if h := hostcheck.ReadHint(path, err); h != "" {
			msg += ": " + h
		}
		return nil, ErrorList{{File: path, Msg: msg}}
	}
	return parse(path, data, osSource{})
}

// Parse maps and validates src as the config file name; #include names
// are read from fsys relative to name's directory (fsys may be nil when
// there are no includes). It is Load without the OS, for tests.
func Parse(name string, src []byte, fsys fs.FS) (*Config, error) {
	return parse(name, src, fsSource{fsys})
}

func parse(name string, src []byte, s source) (*Config, error) {
	d := &diag{}
	lx := &lexer{diag: d, src: s}
	lx.file(name, src)
	b := &builder{diag: d, src: s, lx: lx}
	b.build()
	cfg := b.cfg
	cfg.Files = lx.files
	// What an included file holds is quoted only in short excerpts: the
	// main file is the admin's own, an include may be any file root reads
	// (the messages reach check-config's output and, on reload, the log).
	for _, e := range append(append([]*Error(nil), d.errs...), d.warns...) {
		if e.File != name && e.File != "" {
			e.Msg = excerpts(e.Msg)
		}
	}
	errs := capPerFile(dedupe(d.errs), name)
	warns := dedupe(d.warns)
	sortErrors(errs, cfg.Files)
	sortErrors(warns, cfg.Files)
	cfg.Warnings = warns
	if len(errs) > 0 {
		return cfg, ErrorList(errs)
	}
	return cfg, nil
}

// maxIncludedErrors is how many problems an included file reports: a file
// that is no config at all (a log, a binary) would otherwise repeat one
// message per line into the daemon's log at every reload.
const maxIncludedErrors = 10

func capPerFile(errs []*Error, main string) []*Error {
	n := map[string]int{}
	out := errs[:0]
	var extra []*Error
	for _, e := range errs {
		if e.File == main || e.File == "" {
			out = append(out, e)
			continue
		}
		if n[e.File]++; n[e.File] <= maxIncludedErrors {
			out = append(out, e)
		} else if n[e.File] == maxIncludedErrors+1 {
			extra = append(extra, &Error{File: e.File, Line: e.Line})
		}
	}
	for _, e := range extra {
		e.Msg = fmt.Sprintf("%d more problems in this file are not shown; is it a config file?", n[e.File]-maxIncludedErrors)
		out = append(out, e)
	}
	return out
}

// dedupe drops identical messages: a bad line in a template is reported
// once, not once per section that inherits it.
func dedupe(errs []*Error) []*Error {
	seen := map[Error]bool{}
	out := errs[:0]
	for _, e := range errs {
		if seen[*e] {
			continue
		}
		seen[*e] = true
		out = append(out, e)
	}
	return out
}

// builder maps lexed sections onto a Config.
type builder struct {
	*diag
	src source
	lx  *lexer
	cfg *Config

	peerAt  map[string]*section // peer name -> its section, for duplicates
	ctxAt   map[string]*section // dial plan context -> first section
	network *section            // [network], for messages
	ppp     *pppLayer           // [ppp]
	pppFor  map[string][]*pppLayer
	lines   *lineSet
	addrAt  map[string]rawLine // line name -> where its local:remote was written
	// peerDefaults are [general]'s lines that chan_sip uses as every
	// peer's defaults (peerDefaultKeys), in file order.
	peerDefaults []entry
}

// namedSections parse the sections of the box's own, by lower-case name;
// the others are ignored (ignoredSections) or are SIP peers.
var namedSections = map[string]func(*builder, *section, []entry){
	"general": (*builder).general,
	"box":     (*builder).box,
	"network": (*builder).networkSection,
	"radius":  (*builder).radiusSection,
}

func (b *builder) build() {
	b.cfg = &Config{
		Box: Box{LogLevel: slog.LevelInfo, MemoryLimit: DefaultMemoryLimit},
		PBX: pbx.DefaultConfig(),
		PPP: ppp.DefaultConfig(),
		Net: netstack.DefaultConfig(),
	}
	b.peerAt = map[string]*section{}
	b.ctxAt = map[string]*section{}
	b.pppFor = map[string][]*pppLayer{}
	b.lines = newLineSet()
	b.addrAt = map[string]rawLine{}

	// [general]'s peer defaults go first in every peer, whatever the
	// order of the sections (chan_sip reads [general] before any peer).
	for _, s := range b.lx.sections {
		if s.Kind == kindSIP && strings.EqualFold(s.Name, "general") {
			for _, e := range s.Entries {
				if peerDefaultKeys[e.Key] {
					b.peerDefaults = append(b.peerDefaults, e)
				}
			}
		}
	}
	named := map[string]*section{} // every sip-style section so far, for templates and (+)
	used := map[string]bool{}
	var order []*section
	for _, s := range b.lx.sections {
		if s.Kind != kindSIP {
			order = append(order, s)
			continue
		}
		if s.Append {
			prev := named[s.Name]
			if prev == nil {
				b.errorf(s.File, s.Line, "[%s](+) adds to a section that is not defined above", s.Name)
				continue
			}
			if len(s.Parents) > 0 {
				b.errorf(s.File, s.Line, "[%s](+) cannot add templates", s.Name)
			}
			prev.Entries = append(prev.Entries, s.Entries...)
			continue
		}
		for _, p := range s.Parents {
			if named[p] == nil {
				b.errorf(s.File, s.Line, "[%s] inherits from %q, which is not defined above it", s.Name, p)
			}
			used[p] = true
		}
		named[s.Name] = s
		order = append(order, s)
	}

	for _, s := range order {
		switch s.Kind {
		case kindMgetty:
			b.mgetty(s)
			continue
		case kindLine:
			b.lineSection(s)
			continue
		case kindPPP:
			b.pppSection(s)
			continue
		case kindUsers:
			b.users(s)
			continue
		default: // the other values: after the switch
		}
		if s.Template {
			if !used[s.Name] {
				b.warnf(s.File, s.Line, "template [%s] is never used", s.Name)
			}
			continue
		}
		budget := maxInherited
		es := effective(s, named, nil, &budget)
		if budget < 0 {
			b.errorf(s.File, s.Line, "[%s]: templates expand to more than %d lines", s.Name, maxInherited)
			continue
		}
		if parse, ok := namedSections[strings.ToLower(s.Name)]; ok {
			parse(b, s, es)
			continue
		}
		if why, ok := ignoredSections[strings.ToLower(s.Name)]; ok {
			b.warnf(s.File, s.Line, "[%s]: ignored: %s", s.Name, why)
			continue
		}
		b.sipSection(s, es)
	}
	b.finishLines()
	b.validate()
}

// effective returns s's entries after its templates': inheritance is
// textual, so multi-value keys (permit, allow) accumulate and single-value
// keys are overridden by whatever comes later.
func effective(s *section, named map[string]*section, seen map[*section]bool, budget *int) []entry {
	if seen == nil {
		seen = map[*section]bool{}
	}
	if seen[s] || *budget < 0 {
		return nil
	}
	*budget -= len(s.Entries)
	seen[s] = true
	var out []entry
	for _, p := range s.Parents {
		if ps := named[p]; ps != nil && ps != s {
			out = append(out, effective(ps, named, seen, budget)...)
		}
	}
	seen[s] = false
	return append(out, s.Entries...)
}

// maxInherited bounds what templates can expand to: each parent is
// copied in, so [c](b,b,b) of [b](a,a,a) grows geometrically.
const maxInherited = 100000

// sectionKinds is said whenever a section cannot be placed.
const sectionKinds = "a SIP peer needs type=friend, peer or user; a dial plan context has exten =>, same => or include =>; " +
	"the other sections are [general], [box], [network], [radius], [mgetty], [line NAME], [ppp], [ppp NAME] and [users]"

// sipSection decides whether s is a peer or a dial plan context.
func (b *builder) sipSection(s *section, es []entry) {
	var typ, plan *entry
	for i := range es {
		switch es[i].Key {
		case "type":
			typ = &es[i]
		case "exten", "same", "include":
			if plan == nil {
				plan = &es[i]
			}
		}
	}
	switch {
	case typ != nil && plan != nil:
		b.errorf(s.File, s.Line, "[%s] has both type= (line %d, a SIP peer) and %s => (line %d, a dial plan context); use two sections",
			s.Name, typ.Line, plan.Key, plan.Line)
	case typ != nil:
		if prev := b.peerAt[s.Name]; prev != nil {
			b.errorf(s.File, s.Line, "duplicate peer [%s]: already defined at %s:%d", s.Name, prev.File, prev.Line)
			return
		}
		if prev := b.ctxAt[s.Name]; prev != nil {
			b.errorf(s.File, s.Line, "peer [%s] has the name of the dial plan context at %s:%d", s.Name, prev.File, prev.Line)
		}
		b.peerAt[s.Name] = s
		b.cfg.PBX.Peers = append(b.cfg.PBX.Peers, b.peer(s, append(slices.Clip(b.peerDefaults), es...)))
	case plan != nil:
		if prev := b.peerAt[s.Name]; prev != nil {
			b.errorf(s.File, s.Line, "dial plan context [%s] has the name of the peer at %s:%d", s.Name, prev.File, prev.Line)
		}
		if b.ctxAt[s.Name] == nil {
			b.ctxAt[s.Name] = s
		}
		b.context(s, es)
	case len(es) == 0 && !s.Bad:
		b.warnf(s.File, s.Line, "[%s] is empty and ignored", s.Name)
	default:
		b.errorf(s.File, s.Line, "[%s] is not a section isp-box knows%s: %s", s.Name, sectionHint(s.Name), sectionKinds)
	}
}

// context collects a dial plan context's lines; pbx/dialplan compiles them.
func (b *builder) context(s *section, es []entry) {
	for _, e := range es {
		switch e.Key {
		case "exten", "same", "include":
			b.cfg.PBX.Dialplan = append(b.cfg.PBX.Dialplan, dialplan.Line{
				Context: s.Name, Key: e.Key, Value: e.Value, File: e.File, Line: e.Line,
			})
		default:
			if why, ok := contextIgnored[e.Key]; ok {
				b.warnf(e.File, e.Line, "%s: ignored: %s", e.Key, why)
				continue
			}
			b.errorf(e.File, e.Line, "unknown key %q in dial plan context [%s] (expected exten =>, same => or include =>)%s",
				e.RawKey, s.Name, suggest(e.Key, []string{"exten", "same", "include"}))
		}
	}
}

// sectionHint suggests the fixed section a misspelt name may be.
func sectionHint(name string) string {
	h := suggest(strings.ToLower(name), []string{"general", "box", "network", "radius", "mgetty", "users", "ppp"})
	if h == "" {
		return ""
	}
	return " (did you mean [" + strings.TrimSuffix(strings.TrimPrefix(h, " (did you mean "), "?)") + "]?)"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
