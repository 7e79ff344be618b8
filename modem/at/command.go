package at

import (
	"errors"
	"fmt"
	"strings"
)

// Command is one command of an AT command line: "E0", "&C1", "S0=2",
// "S7?", "DT5551234", "I3".
type Command struct {
	Name   string // "A", "D", "E", "&C", "S", "Z", "+++"-free: only what follows AT
	Num    int    // the numeric argument; 0 when absent (Hayes: a missing digit means 0)
	HasNum bool   // a digit was given
	Reg    int    // S commands: the register number
	Set    bool   // S commands: "Sn=v"
	Query  bool   // "Sn?" or "X?"-style queries
	Dial   string // D: the dial string after D (modifiers T/P included)
}

// ErrSyntax is returned for a command line the modem answers with ERROR.
var ErrSyntax = errors.New("at: syntax error")

// ParseCommandLine parses the text after "AT" (without the terminating CR):
// "Q0V1H0", "S0=0Q0&D3&C1", "DT555-1234;" (a dial command takes the rest of
// the line, as on every Hayes modem). Spaces are ignored outside D.
func ParseCommandLine(s string) ([]Command, error) {
	var out []Command
	i := 0
	num := func() (int, bool) {
		n, ok := 0, false
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if n < 1e6 {
				n = n*10 + int(s[i]-'0')
			}
			i++
			ok = true
		}
		return n, ok
	}
	// setOrQuery reads what may follow a register or an extended command:
	// "=n" sets it (n may be absent), "?" reads it.
	setOrQuery := func(cmd *Command) {
		switch {
		case i < len(s) && s[i] == '=':
			i++
			cmd.Set = true
			cmd.Num, cmd.HasNum = num()
		case i < len(s) && s[i] == '?':
			i++
			cmd.Query = true
		}
	}
	for i < len(s) {
		c := upper(s[i])
		i++
		switch {
		case c == ' ':
			continue
		case c == 'D':
			out = append(out, Command{Name: "D", Dial: strings.TrimSpace(s[i:])})
			return out, nil
		case c == 'S':
			reg, ok := num()
			if !ok {
				return nil, fmt.Errorf("%w: S without register at %d", ErrSyntax, i)
			}
			cmd := Command{Name: "S", Reg: reg}
			// "S7" alone selects the register on some modems; USR
			// treats it like a query of nothing. Accept as a no-op.
			setOrQuery(&cmd)
			out = append(out, cmd)
		case c == '+' || c == '#':
			// Extended commands: "+VCID=1", "#CID=1", "+GMI?" (V.250 §5.4):
			// the name runs to '=', '?', ';' or the end.
			j := i
			for j < len(s) && s[j] != '=' && s[j] != '?' && s[j] != ';' {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("%w: empty extended command at %d", ErrSyntax, i-1)
			}
			cmd := Command{Name: string(c) + strings.ToUpper(s[i:j])}
			i = j
			if i+1 < len(s) && s[i] == '=' && s[i+1] == '?' {
				i += 2
				cmd.Set, cmd.Query = true, true
			} else {
				setOrQuery(&cmd)
			}
			if i < len(s) && s[i] == ';' {
				i++
			}
			out = append(out, cmd)
		case c == '&' || c == '\\' || c == '%' || c == '*':
			if i >= len(s) {
				return nil, fmt.Errorf("%w: %c at end of line", ErrSyntax, c)
			}
			l := upper(s[i])
			if l < 'A' || l > 'Z' {
				return nil, fmt.Errorf("%w: %c%c", ErrSyntax, c, s[i])
			}
			i++
			cmd := Command{Name: string([]byte{c, l})}
			cmd.Num, cmd.HasNum = num()
			out = append(out, cmd)
		case c >= 'A' && c <= 'Z':
			cmd := Command{Name: string(c)}
			if i < len(s) && s[i] == '?' {
				i++
				cmd.Query = true
			} else {
				cmd.Num, cmd.HasNum = num()
			}
			out = append(out, cmd)
		default:
			return nil, fmt.Errorf("%w: unexpected %q at %d", ErrSyntax, c, i-1)
		}
	}
	return out, nil
}

// String formats the command back into AT text (without "AT").
func (c Command) String() string {
	switch {
	case c.Name == "D":
		return "D" + c.Dial
	case c.Name == "S":
		return fmt.Sprintf("S%d", c.Reg) + c.setOrQuery()
	case len(c.Name) > 1 && (c.Name[0] == '+' || c.Name[0] == '#'):
		if c.Set && c.Query {
			return c.Name + "=?;"
		}
		return c.Name + c.setOrQuery() + ";"
	case c.Query:
		return c.Name + "?"
	case c.HasNum:
		return fmt.Sprintf("%s%d", c.Name, c.Num)
	}
	return c.Name
}

// setOrQuery formats what ParseCommandLine's setOrQuery reads.
func (c Command) setOrQuery() string {
	switch {
	case c.Set && c.HasNum:
		return fmt.Sprintf("=%d", c.Num)
	case c.Set:
		return "="
	case c.Query:
		return "?"
	}
	return ""
}

func upper(b byte) byte {
	if b >= 'a' && b <= 'z' {
		return b - 'a' + 'A'
	}
	return b
}
