package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// kind is what a section header says the section is. Sections of kindSIP
// are sip.conf or extensions.conf sections; which of the two is decided by
// their keys once templates are resolved.
type kind int

const (
	kindSIP    kind = iota // [general], [box], [network], peers, templates, contexts
	kindMgetty             // [mgetty]: mgetty.config verbatim
	kindLine               // [line NAME]: one port's mgetty keys
	kindPPP                // [ppp] and [ppp NAME]: pppd options files verbatim
	kindUsers              // [users]: pap-secrets verbatim
)

// entry is one `key = value` or `key => value` line of a kindSIP section.
type entry struct {
	Key    string // lower case, for matching
	RawKey string // as written, for messages
	Op     string // "=" or "=>"
	Value  string
	File   string
	Line   int
}

// rawLine is one line of a verbatim section (mgetty, line, ppp, users),
// kept as written; each kind has its own tokenizer.
type rawLine struct {
	Text string
	File string
	Line int
}

// section is one [header] and what follows it up to the next header.
type section struct {
	Name     string // as written inside the brackets, spaces collapsed
	Arg      string // for [line NAME] and [ppp NAME]: NAME
	Kind     kind
	Template bool     // (!)
	Append   bool     // (+)
	Parents  []string // (a,b)
	File     string
	Line     int
	Bad      bool      // a line of it could not be read
	Entries  []entry   // kindSIP
	Raw      []rawLine // the other kinds
}

// source reads the main file's includes: from the OS for Load, from an
// fs.FS for Parse.
type source interface {
	readFile(name string) ([]byte, error)
	glob(pattern string) ([]string, error)
	// resolve names an include relative to the file that includes it.
	resolve(from, name string) (string, error)
}

type osSource struct{}

func (osSource) readFile(name string) ([]byte, error)  { return readConfigFile(name) }
func (osSource) glob(pattern string) ([]string, error) { return filepath.Glob(pattern) }
func (osSource) resolve(from, name string) (string, error) {
	if filepath.IsAbs(name) {
		return filepath.Clean(name), nil
	}
	return filepath.Join(filepath.Dir(from), name), nil
}

type fsSource struct{ fsys fs.FS }

func (s fsSource) readFile(name string) ([]byte, error) {
	if s.fsys == nil {
		return nil, fs.ErrNotExist
	}
	f, err := s.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readRegular(f)
}

// Limits on what a config may be made of. A config is a few KB; these
// stop `#include /dev/zero` or a runaway generated file from taking the
// memory of the daemon that reloads it.
const (
	maxFileSize = 1 << 20 // bytes per file
	maxLineLen  = 4096    // bytes per line, a value with it
)

// readConfigFile reads a config file from the OS: a regular file only (a
// FIFO would block check-config and reload for ever, a device is endless),
// at most maxFileSize bytes. O_NONBLOCK keeps the open of a FIFO from
// waiting for a writer.
func readConfigFile(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readRegular(f)
}

func readRegular(f fs.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s); only regular files are read", fileKind(st.Mode()))
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%d bytes; a config file may have at most %d", st.Size(), maxFileSize)
	}
	// The size may have grown since the stat: read one byte past the cap.
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("more than %d bytes; a config file may have at most %d", maxFileSize, maxFileSize)
	}
	return data, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return m.Type().String()
}

func (s fsSource) glob(pattern string) ([]string, error) {
	if s.fsys == nil {
		return nil, nil
	}
	return fs.Glob(s.fsys, pattern)
}

func (fsSource) resolve(from, name string) (string, error) {
	if path.IsAbs(name) {
		return "", errors.New("an absolute path cannot be read here (only relative includes work without Load)")
	}
	p := path.Join(path.Dir(from), name)
	if !fs.ValidPath(p) {
		return "", fmt.Errorf("%q is outside the config directory", name)
	}
	return p, nil
}

// maxIncludeDepth stops runaway nesting that is not a cycle (a glob that
// includes ever deeper directories).
const maxIncludeDepth = 16

// lexer turns files into sections, following #include.
type lexer struct {
	*diag
	src      source
	files    []string // every file read, in order
	stack    []string // files being read, for cycle detection
	sections []*section
	cur      *section

	// Asterisk block comments ;-- ... --; span lines.
	inBlock   bool
	blockFile string
	blockLine int
}

// file reads one file's lines into the lexer, in the current section.
func (lx *lexer) file(name string, data []byte) {
	lx.stack = append(lx.stack, name)
	defer func() { lx.stack = lx.stack[:len(lx.stack)-1] }()
	seen := false
	for _, f := range lx.files {
		seen = seen || f == name
	}
	if !seen {
		lx.files = append(lx.files, name)
	}
	// A BOM (from Windows editors) and CRLF line ends are not part of the text.
	lines := strings.Split(strings.TrimPrefix(string(data), "\ufeff"), "\n")
	for i, text := range lines {
		lx.line(name, i+1, strings.TrimSuffix(text, "\r"))
	}
	if lx.inBlock {
		lx.errorf(lx.blockFile, lx.blockLine, "block comment ;-- is never closed with --;")
		lx.inBlock = false
	}
}

func (lx *lexer) line(file string, n int, text string) {
	if len(text) > maxLineLen {
		lx.errorf(file, n, "line is %d bytes long; at most %d are read", len(text), maxLineLen)
		return
	}
	verbatim := lx.cur != nil && lx.cur.Kind != kindSIP
	if lx.inBlock || !verbatim {
		text = lx.stripComment(file, n, text)
	}
	trimmed := strings.TrimSpace(text)
	if trimmed == "" || strings.HasPrefix(trimmed, ";") {
		return
	}
	if strings.HasPrefix(trimmed, "#") {
		word, rest := trimmed, ""
		if i := strings.IndexAny(trimmed, " \t\"<"); i > 0 {
			word, rest = trimmed[:i], trimmed[i:]
		}
		switch strings.ToLower(word) {
		case "#include", "#tryinclude":
			lx.include(file, n, strings.ToLower(word) == "#tryinclude", strings.TrimSpace(rest))
			return
		case "#exec":
			lx.errorf(file, n, "#exec is not supported: isp-box runs no programs from its config")
			return
		}
		if verbatim {
			return // a comment in mgetty.config, pppd options and pap-secrets
		}
		lx.errorf(file, n, "unknown directive %q (expected #include or #tryinclude)", word)
		return
	}
	if strings.HasPrefix(trimmed, "[") {
		if verbatim {
			// The header is in Asterisk syntax even after a verbatim section.
			trimmed = strings.TrimSpace(lx.stripComment(file, n, trimmed))
		}
		lx.header(file, n, trimmed)
		return
	}
	if lx.cur == nil {
		lx.errorf(file, n, "%q is outside any section (the file must start with a [section] header)", trimmed)
		return
	}
	if verbatim {
		lx.cur.Raw = append(lx.cur.Raw, rawLine{Text: text, File: file, Line: n})
		return
	}
	lx.keyValue(file, n, trimmed)
}

// excerptLen is how much of a quoted text from an included file a message
// shows: enough to recognise the line, not enough to leak a password hash
// when someone writes `#include /etc/shadow`.
const excerptLen = 12

// excerpts shortens every quoted string (as %q writes them) in msg to
// excerptLen characters and its length.
func excerpts(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); {
		if msg[i] == '"' {
			if q, err := strconv.QuotedPrefix(msg[i:]); err == nil {
				u, _ := strconv.Unquote(q)
				if r := []rune(u); len(r) > excerptLen {
					fmt.Fprintf(&b, "%s…\" (%d bytes)", strings.TrimSuffix(strconv.Quote(string(r[:excerptLen])), `"`), len(u))
				} else {
					b.WriteString(q)
				}
				i += len(q)
				continue
			}
		}
		b.WriteByte(msg[i])
		i++
	}
	return b.String()
}

// stripComment removes Asterisk comments: `;` to the end of the line
// unless written `\;`, and block comments `;--` ... `--;`.
func (lx *lexer) stripComment(file string, n int, line string) string {
	var b strings.Builder
	for i := 0; i < len(line); i++ {
		if lx.inBlock {
			if strings.HasPrefix(line[i:], "--;") {
				lx.inBlock = false
				i += 2
			}
			continue
		}
		c := line[i]
		if c == '\\' && i+1 < len(line) && line[i+1] == ';' {
			b.WriteByte(';')
			i++
			continue
		}
		if c == ';' {
			if strings.HasPrefix(line[i:], ";--") {
				lx.inBlock, lx.blockFile, lx.blockLine = true, file, n
				i += 2
				continue
			}
			break
		}
		b.WriteByte(c)
	}
	return b.String()
}

// header parses `[name]`, `[name](!)`, `[name](+)`, `[name](a,b)`.
func (lx *lexer) header(file string, n int, text string) {
	end := strings.IndexByte(text, ']')
	if end < 0 {
		// Read it as if the ] were there (before a template list, if
		// any), so the section's lines land in it: one error, not one
		// "outside any section" per line that follows.
		end = len(text)
		if i := strings.IndexByte(text, '('); i > 0 {
			end = i
		}
		text = strings.TrimRight(text[:end], " \t") + "]" + text[end:]
		end = strings.IndexByte(text, ']')
		lx.errorf(file, n, "section header %q has no closing ]; read as %s", strings.Replace(text, "]", "", 1), text[:end+1])
	}
	name := strings.Join(strings.Fields(text[1:end]), " ")
	s := &section{Name: name, File: file, Line: n}
	rest := strings.TrimSpace(text[end+1:])
	if strings.HasPrefix(rest, "(") {
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			lx.errorf(file, n, "template list %q has no closing )", rest)
			rest = ""
		} else {
			for _, o := range strings.Split(rest[1:end], ",") {
				switch o = strings.TrimSpace(o); o {
				case "":
				case "!":
					s.Template = true
				case "+":
					s.Append = true
				default:
					s.Parents = append(s.Parents, o)
				}
			}
			rest = strings.TrimSpace(rest[end+1:])
		}
	}
	if rest != "" {
		lx.errorf(file, n, "unexpected %q after the section header", rest)
	}
	if name == "" {
		lx.errorf(file, n, "empty section name []")
	}
	word, arg, _ := strings.Cut(name, " ")
	switch strings.ToLower(word) {
	case "mgetty":
		s.Kind = kindMgetty
	case "line":
		s.Kind = kindLine
	case "ppp":
		s.Kind = kindPPP
	case "users":
		s.Kind = kindUsers
	}
	s.Arg = arg
	switch {
	case s.Kind == kindLine && arg == "":
		lx.errorf(file, n, "[line] needs a port name, like [line ttyUSB0]")
	case (s.Kind == kindMgetty || s.Kind == kindUsers) && arg != "":
		lx.errorf(file, n, "[%s] takes no name; found [%s]", strings.ToLower(word), name)
	case s.Kind != kindSIP && (s.Template || s.Append || len(s.Parents) > 0):
		lx.errorf(file, n, "templates and (+) apply to sip.conf-style sections only, not to [%s]", name)
		s.Template, s.Append, s.Parents = false, false, nil
	case s.Kind == kindSIP && strings.Contains(name, " "):
		lx.errorf(file, n, "section name %q has a space; only [line NAME] and [ppp NAME] take two words", name)
	}
	lx.sections = append(lx.sections, s)
	lx.cur = s
}

func (lx *lexer) keyValue(file string, n int, text string) {
	eq := strings.IndexByte(text, '=')
	if eq < 0 {
		lx.cur.Bad = true
		lx.errorf(file, n, "expected key = value or key => value in [%s], found %q%s", lx.cur.Name, text, sectionHint(lx.cur.Name))
		return
	}
	op, val := "=", text[eq+1:]
	if strings.HasPrefix(val, ">") {
		op, val = "=>", val[1:]
	}
	key := strings.TrimSpace(text[:eq])
	if key == "" {
		lx.cur.Bad = true
		lx.errorf(file, n, "missing key before %q", op)
		return
	}
	lx.cur.Entries = append(lx.cur.Entries, entry{
		Key: strings.ToLower(key), RawKey: key, Op: op,
		Value: strings.TrimSpace(val), File: file, Line: n,
	})
}

// include handles #include and #tryinclude: `"file"`, `<file>` or a bare
// name, relative to the including file; globs allowed.
func (lx *lexer) include(file string, n int, try bool, arg string) {
	directive := "#include"
	if try {
		directive = "#tryinclude"
	}
	if len(arg) >= 2 && (arg[0] == '"' && arg[len(arg)-1] == '"' || arg[0] == '<' && arg[len(arg)-1] == '>') {
		arg = arg[1 : len(arg)-1]
	}
	if arg == "" {
		lx.errorf(file, n, "%s needs a file name", directive)
		return
	}
	target, err := lx.src.resolve(file, arg)
	if err != nil {
		lx.errorf(file, n, "%s %q: %v", directive, arg, err)
		return
	}
	names := []string{target}
	if strings.ContainsAny(arg, "*?[") {
		names, err = lx.src.glob(target)
		if err != nil {
			lx.errorf(file, n, "%s %q: bad pattern: %v", directive, arg, err)
			return
		}
		if len(names) == 0 {
			if !try {
				lx.warnf(file, n, "%s %q matches no file", directive, arg)
			}
			return
		}
	}
	for _, name := range names {
		for i, f := range lx.stack {
			if f == name {
				chain := append(append([]string{}, lx.stack[i:]...), name)
				lx.errorf(file, n, "%s %q: include cycle: %s", directive, arg, strings.Join(chain, " -> "))
				return
			}
		}
		if len(lx.stack) >= maxIncludeDepth {
			lx.errorf(file, n, "%s %q: includes nested deeper than %d", directive, arg, maxIncludeDepth)
			return
		}
		data, err := lx.src.readFile(name)
		if err != nil {
			if try && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if errors.Is(err, fs.ErrNotExist) {
				lx.errorf(file, n, "%s %q: file %s does not exist", directive, arg, name)
			} else {
				lx.errorf(file, n, "%s %q: %v", directive, arg, err)
			}
			continue
		}
		// An included file continues the current section (Asterisk inlines
		// it); its block-comment state is its own.
		saved := lx.inBlock
		lx.inBlock = false
		lx.file(name, data)
		lx.inBlock = saved
	}
}
