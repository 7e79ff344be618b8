package dialplan

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Pattern is one extension as written after `exten =>`: a literal such as
// "881" or a pattern such as "_X!" (leading underscore). Spaces and '-'
// outside brackets are "eye candy" and are removed at compile time, as
// Asterisk's ext_strncpy(..., nofluff) does (main/pbx.c).
type Pattern struct {
	raw     string // as written
	norm    string // without the '_' prefix, fluff removed
	literal bool
	elems   []elem
}

type elemKind uint8

const (
	elemSet  elemKind = iota // one character out of a set (a literal char is a set of one)
	elemDot                  // '.': one or more of anything
	elemBang                 // '!': zero or more of anything, early match
)

// Sort weights from ext_cmp_pattern_pos (main/pbx.c, Asterisk 18): bits
// 0-7 the lowest character of the set, bits 8-15 the set size, above that
// the wildcards; end of pattern sorts last.
const (
	weightDot   = 0x18000
	weightBang  = 0x28000
	weightEnd   = 0x30000
	weightCount = 0x100
)

type elem struct {
	kind   elemKind
	set    [32]byte // bitmap of accepted bytes, as Asterisk's "bitwise"
	weight int
}

func (e *elem) has(c byte) bool { return e.set[c/8]&(1<<(c%8)) != 0 }

var (
	errEmptyPattern = errors.New("empty pattern")
	errUnclosedSet  = errors.New("'[' without ']'")
	errEmptySet     = errors.New("empty character set []")
	errEmptyExten   = errors.New("empty extension")
)

// ParsePattern parses an extension name (literal or `_` pattern).
func ParsePattern(s string) (*Pattern, error) {
	p := &Pattern{raw: s}
	if s == "" {
		return nil, errEmptyExten
	}
	if s[0] != '_' {
		p.literal = true
		p.norm = stripFluff(s)
		if p.norm == "" {
			return nil, errEmptyExten
		}
		return p, nil
	}
	body := stripFluff(s[1:])
	if body == "" {
		return nil, errEmptyPattern
	}
	p.norm = body
	for i := 0; i < len(body); i++ {
		c := body[i]
		var e elem
		switch c {
		case 'N', 'n': // 2-9
			e.set[6], e.set[7] = 0xfc, 0x03
			e.weight = 8*weightCount | '2'
		case 'X', 'x': // 0-9
			e.set[6], e.set[7] = 0xff, 0x03
			e.weight = 10*weightCount | '0'
		case 'Z', 'z': // 1-9
			e.set[6], e.set[7] = 0xfe, 0x03
			e.weight = 9*weightCount | '1'
		case '.':
			e.kind, e.weight = elemDot, weightDot
		case '!':
			e.kind, e.weight = elemBang, weightBang
		case '[':
			end := strings.IndexByte(body[i+1:], ']')
			if end < 0 {
				return nil, fmt.Errorf("pattern %q: %w", s, errUnclosedSet)
			}
			set := body[i+1 : i+1+end]
			i += 1 + end
			if set == "" {
				return nil, fmt.Errorf("pattern %q: %w", s, errEmptySet)
			}
			e.weight = parseSet(set, &e.set)
		default:
			e.set[c/8] = 1 << (c % 8)
			e.weight = weightCount | int(c)
		}
		p.elems = append(p.elems, e)
	}
	return p, nil
}

// parseSet fills bits for a bracket set and returns its sort weight (count
// of distinct characters and the lowest one), as ext_cmp_pattern_pos.
// Inside a set X, N and Z are ordinary characters; "a-c" is a range only
// with a character on both sides.
func parseSet(set string, bits *[32]byte) int {
	count, cmin := 0, 0xff
	for j := 0; j < len(set); j++ {
		c1, c2 := set[j], set[j]
		if j+2 < len(set) && set[j+1] == '-' {
			c2 = set[j+2]
			j += 2
		}
		if int(c1) < cmin {
			cmin = int(c1)
		}
		for c := int(c1); c <= int(c2); c++ {
			mask := byte(1 << (c % 8))
			if bits[c/8]&mask == 0 {
				bits[c/8] |= mask
				count++
			}
		}
	}
	if count == 0 { // reversed range such as [9-0]: matches nothing
		return weightEnd
	}
	return count*weightCount | cmin
}

// stripFluff removes spaces and '-' outside brackets.
func stripFluff(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '[':
			in = true
		case c == ']':
			in = false
		case !in && (c == ' ' || c == '-'):
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// String returns the extension as written.
func (p *Pattern) String() string { return p.raw }

// IsPattern reports whether the extension is an `_` pattern.
func (p *Pattern) IsPattern() bool { return !p.literal }

// matchResult is _extension_match_core's answer.
type matchResult uint8

const (
	noMatch    matchResult = iota
	fullMatch              // the data is a complete match
	earlyMatch             // matched through '!'
	canMatch               // the data is a prefix of something that matches
)

// match reports how data matches p (main/pbx.c _extension_match_core, in
// E_MATCH mode; canMatch is E_CANMATCH's extra answer).
func (p *Pattern) match(data string) matchResult {
	if p.literal {
		d := stripData(data)
		switch {
		case d == p.norm:
			return fullMatch
		case strings.HasPrefix(p.norm, d):
			return canMatch
		}
		return noMatch
	}
	i, j := 0, 0
	for i < len(data) && j < len(p.elems) {
		c := data[i]
		if c == '-' { // '-' in the data is a separator
			i++
			continue
		}
		e := &p.elems[j]
		switch e.kind {
		case elemDot:
			return fullMatch // one character here, anything after
		case elemBang:
			return earlyMatch
		default: // a character class: below
		}
		if !e.has(c) {
			return noMatch
		}
		i++
		j++
	}
	for i < len(data) && data[i] == '-' {
		i++
	}
	if i < len(data) {
		return noMatch // data longer than the pattern
	}
	switch {
	case j == len(p.elems):
		return fullMatch
	case p.elems[j].kind == elemBang:
		return earlyMatch
	}
	return canMatch
}

// Match reports whether data (a dialled number) matches the extension.
func (p *Pattern) Match(data string) bool {
	r := p.match(data)
	return r == fullMatch || r == earlyMatch
}

// CanMatch reports whether data matches or could match with more digits.
func (p *Pattern) CanMatch(data string) bool { return p.match(data) != noMatch }

func stripData(s string) string {
	if !strings.ContainsAny(s, "- ") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, s)
}

// Compare orders extensions as Asterisk sorts a context (ext_cmp, main/pbx.c):
// literals first (byte order), then patterns from the most specific: position
// by position, a smaller set wins, equal sizes compare by the lowest
// character then by the bitmap; '.' sorts after every set, '!' after '.',
// the end of the pattern last. It returns <0, 0 or >0.
func Compare(a, b *Pattern) int {
	switch {
	case a.literal && b.literal:
		return strings.Compare(a.norm, b.norm)
	case a.literal:
		return -1
	case b.literal:
		return 1
	}
	for i := 0; ; i++ {
		ea, eb := elemAt(a, i), elemAt(b, i)
		if d := ea.weight - eb.weight; d != 0 {
			return d
		}
		if d := bytes.Compare(ea.set[:], eb.set[:]); d != 0 {
			return d
		}
		if ea.weight == weightEnd && i >= len(a.elems) && i >= len(b.elems) {
			return 0
		}
	}
}

var endElem = elem{weight: weightEnd}

func elemAt(p *Pattern, i int) *elem {
	if i < len(p.elems) {
		return &p.elems[i]
	}
	return &endElem
}
