// Package g711 implements ITU-T G.711 μ-law and A-law companding between
// 16-bit linear PCM and 8-bit code words. The arithmetic follows G.711
// Tables 1a/1b and 2a/2b: segment (exponent) plus 4-bit mantissa, with
// μ-law's bias of 33 (132 at 16-bit scale) and A-law's even-bit inversion.
package g711

// Law selects the companding law of a stream.
type Law int

const (
	Ulaw Law = iota // PCMU, payload type 0
	Alaw            // PCMA, payload type 8
)

func (l Law) String() string {
	if l == Alaw {
		return "A-law"
	}
	return "μ-law"
}

var (
	ulawToLinear [256]int16
	alawToLinear [256]int16
)

func init() {
	for i := 0; i < 256; i++ {
		ulawToLinear[i] = decodeUlaw(byte(i))
		alawToLinear[i] = decodeAlaw(byte(i))
	}
}

const (
	ulawBias = 0x84 // 33 << 2: G.711 μ-law bias at 16-bit scale
	ulawClip = 32635
)

// EncodeUlaw compands one linear sample to μ-law.
func EncodeUlaw(x int16) byte {
	v := int(x)
	var sign int
	if v < 0 {
		v = -v
		sign = 0x80
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0F
	return ^byte(sign | exp<<4 | mant)
}

func decodeUlaw(u byte) int16 {
	u = ^u
	t := (int(u&0x0F) << 3) + ulawBias
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(ulawBias - t)
	}
	return int16(t - ulawBias)
}

// DecodeUlaw expands one μ-law code word.
func DecodeUlaw(u byte) int16 { return ulawToLinear[u] }

// EncodeAlaw compands one linear sample to A-law.
func EncodeAlaw(x int16) byte {
	v := int(x) >> 3 // A-law works on 13 bits
	mask := byte(0xD5)
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	seg := 0
	for end := 0x1F; seg < 8 && v > end; end = end<<1 | 1 {
		seg++
	}
	if seg >= 8 {
		return 0x7F ^ mask
	}
	a := byte(seg << 4)
	if seg < 2 {
		a |= byte(v>>1) & 0x0F
	} else {
		a |= byte(v>>seg) & 0x0F
	}
	return a ^ mask
}

func decodeAlaw(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0F) << 4
	seg := int(a&0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}

// DecodeAlaw expands one A-law code word.
func DecodeAlaw(a byte) int16 { return alawToLinear[a] }

// Encode compands samples into dst (len(dst) >= len(src)) with law l.
func (l Law) Encode(dst []byte, src []int16) {
	if l == Alaw {
		for i, x := range src {
			dst[i] = EncodeAlaw(x)
		}
		return
	}
	for i, x := range src {
		dst[i] = EncodeUlaw(x)
	}
}

// Decode expands code words into dst (len(dst) >= len(src)) with law l.
func (l Law) Decode(dst []int16, src []byte) {
	tab := &ulawToLinear
	if l == Alaw {
		tab = &alawToLinear
	}
	for i, c := range src {
		dst[i] = tab[c]
	}
}
