package rtpload

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// Bencode is the encoding of rtpengine's ng control protocol
// (rtpengine's README "The NG Control Protocol": a cookie, a space, then
// one bencoded dictionary). Values are string ([]byte on the wire), int,
// []any and map[string]any.

// Encode appends the bencoding of v to dst. Dictionary keys are sorted,
// as the format requires.
func Encode(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case []byte:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case int:
		dst = append(dst, 'i')
		dst = strconv.AppendInt(dst, int64(x), 10)
		return append(dst, 'e'), nil
	case []string:
		dst = append(dst, 'l')
		for _, e := range x {
			dst, _ = Encode(dst, e)
		}
		return append(dst, 'e'), nil
	case []any:
		dst = append(dst, 'l')
		for _, e := range x {
			var err error
			if dst, err = Encode(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, 'e'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = append(dst, 'd')
		for _, k := range keys {
			dst, _ = Encode(dst, k)
			var err error
			if dst, err = Encode(dst, x[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, 'e'), nil
	default:
		return nil, fmt.Errorf("bencode: cannot encode %T", v)
	}
}

var errBencode = errors.New("bencode: malformed")

// maxDepth bounds nesting so a hostile datagram cannot exhaust the stack.
const maxDepth = 32

// Decode parses one bencoded value that must fill b. Strings decode as
// string, integers as int, lists as []any, dictionaries as map[string]any.
func Decode(b []byte) (any, error) {
	v, n, err := decode(b, 0)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after the value", errBencode, len(b)-n)
	}
	return v, nil
}

func decode(b []byte, depth int) (any, int, error) {
	if len(b) == 0 {
		return nil, 0, fmt.Errorf("%w: truncated", errBencode)
	}
	if depth > maxDepth {
		return nil, 0, fmt.Errorf("%w: nested deeper than %d", errBencode, maxDepth)
	}
	switch c := b[0]; {
	case c == 'i':
		end := indexByte(b, 'e')
		if end < 0 {
			return nil, 0, fmt.Errorf("%w: unterminated integer", errBencode)
		}
		n, err := strconv.Atoi(string(b[1:end]))
		if err != nil {
			return nil, 0, fmt.Errorf("%w: integer %q", errBencode, b[1:end])
		}
		return n, end + 1, nil
	case c == 'l':
		var l []any
		i := 1
		for {
			if i >= len(b) {
				return nil, 0, fmt.Errorf("%w: unterminated list", errBencode)
			}
			if b[i] == 'e' {
				return l, i + 1, nil
			}
			v, n, err := decode(b[i:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			l = append(l, v)
			i += n
		}
	case c == 'd':
		d := map[string]any{}
		i := 1
		for {
			if i >= len(b) {
				return nil, 0, fmt.Errorf("%w: unterminated dictionary", errBencode)
			}
			if b[i] == 'e' {
				return d, i + 1, nil
			}
			k, n, err := decodeString(b[i:])
			if err != nil {
				return nil, 0, err
			}
			i += n
			v, n, err := decode(b[i:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			d[k] = v
			i += n
		}
	case c >= '0' && c <= '9':
		return decodeString(b)
	default:
		return nil, 0, fmt.Errorf("%w: unexpected %q", errBencode, c)
	}
}

func decodeString(b []byte) (string, int, error) {
	colon := indexByte(b, ':')
	if colon <= 0 || colon > 10 {
		return "", 0, fmt.Errorf("%w: string length", errBencode)
	}
	n, err := strconv.Atoi(string(b[:colon]))
	if err != nil || n < 0 || n > len(b)-colon-1 {
		return "", 0, fmt.Errorf("%w: string length %q", errBencode, b[:colon])
	}
	return string(b[colon+1 : colon+1+n]), colon + 1 + n, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
