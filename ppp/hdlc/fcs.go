package hdlc

import "encoding/binary"

// RFC 1662 §C.2: the 16-bit FCS is the CRC-CCITT over the reflected
// polynomial 0x8408, initial value 0xFFFF, complemented on transmission and
// checked against the good-FCS residue 0xF0B8 on reception.
const (
	// InitFCS is the FCS register's initial value (RFC 1662 §C.2 PPPINITFCS16).
	InitFCS uint16 = 0xFFFF
	// GoodFCS is the residue left by a frame whose FCS is right (PPPGOODFCS16).
	GoodFCS uint16 = 0xF0B8
	fcsPoly uint16 = 0x8408
)

// fcsTab holds slicing-by-16 tables: fcsTab[0] is RFC 1662's 256-entry
// table, fcsTab[k][b] is the CRC of byte b followed by k zero bytes, so
// sixteen bytes are folded into the register per step (hash/crc32's
// slicing8, doubled; 8 KiB, which stays in L1).
var fcsTab = func() (t [16][256]uint16) {
	for b := range 256 {
		v := uint16(b)
		for range 8 {
			if v&1 != 0 {
				v = v>>1 ^ fcsPoly
			} else {
				v >>= 1
			}
		}
		t[0][b] = v
	}
	for b := range 256 {
		v := t[0][b]
		for k := 1; k < 16; k++ {
			v = v>>8 ^ t[0][v&0xff]
			t[k][b] = v
		}
	}
	return t
}()

// FCS16 folds p into the running FCS fcs (start with InitFCS).
func FCS16(fcs uint16, p []byte) uint16 {
	t := &fcsTab
	for len(p) >= 16 {
		v := binary.LittleEndian.Uint64(p) ^ uint64(fcs)
		w := binary.LittleEndian.Uint64(p[8:])
		fcs = t[15][byte(v)] ^ t[14][byte(v>>8)] ^
			t[13][byte(v>>16)] ^ t[12][byte(v>>24)] ^ t[11][byte(v>>32)] ^
			t[10][byte(v>>40)] ^ t[9][byte(v>>48)] ^ t[8][byte(v>>56)] ^
			t[7][byte(w)] ^ t[6][byte(w>>8)] ^
			t[5][byte(w>>16)] ^ t[4][byte(w>>24)] ^ t[3][byte(w>>32)] ^
			t[2][byte(w>>40)] ^ t[1][byte(w>>48)] ^ t[0][byte(w>>56)]
		p = p[16:]
	}
	for len(p) >= 8 {
		v := binary.LittleEndian.Uint64(p) ^ uint64(fcs)
		fcs = t[7][byte(v)] ^ t[6][byte(v>>8)] ^
			t[5][byte(v>>16)] ^ t[4][byte(v>>24)] ^ t[3][byte(v>>32)] ^
			t[2][byte(v>>40)] ^ t[1][byte(v>>48)] ^ t[0][byte(v>>56)]
		p = p[8:]
	}
	for _, c := range p {
		fcs = fcs>>8 ^ fcsTab[0][(fcs^uint16(c))&0xff]
	}
	return fcs
}

// fcs16Slow is the RFC 1662 §C.2 byte-at-a-time loop, kept for tests.
func fcs16Slow(fcs uint16, p []byte) uint16 {
	for _, c := range p {
		fcs = fcs>>8 ^ fcsTab[0][(fcs^uint16(c))&0xff]
	}
	return fcs
}
