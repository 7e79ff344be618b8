// Package async is start-stop character framing (ITU-T V.14 §3, without
// its rate-adaption bit deletion): a start bit 0, the data bits least
// significant first, optional parity, stop bits 1, and marks (1) while
// idle. Tx turns a byte queue into the bit stream a modulator pulls; Rx
// turns demodulated bits back into bytes.
package async

// Format is a character format, e.g. 8N1.
type Format struct {
	DataBits int // 5..8
	Parity   Parity
	StopBits int // 1 or 2
}

// Parity of a character format.
type Parity int

const (
	None Parity = iota
	Even
	Odd
)

// Format8N1 is the format of dial-up data calls.
var Format8N1 = Format{DataBits: 8, StopBits: 1}

// Tx frames bytes into bits.
type Tx struct {
	f       Format
	getByte func() (byte, bool)
	shift   uint16
	left    int
}

// NewTx returns a framer pulling bytes from getByte; when it reports
// false the line idles at mark.
func NewTx(f Format, getByte func() (byte, bool)) *Tx {
	return &Tx{f: f, getByte: getByte}
}

// Bit returns the next bit on the line.
func (t *Tx) Bit() int {
	if t.left == 0 {
		b, ok := t.getByte()
		if !ok {
			return 1
		}
		v := uint16(b) & (1<<t.f.DataBits - 1)
		n := t.f.DataBits
		if t.f.Parity != None {
			p := parity(v)
			if t.f.Parity == Odd {
				p ^= 1
			}
			v |= p << n
			n++
		}
		for i := 0; i < t.f.StopBits; i++ {
			v |= 1 << n
			n++
		}
		t.shift = v << 1 // start bit 0
		t.left = n + 1
	}
	bit := int(t.shift & 1)
	t.shift >>= 1
	t.left--
	return bit
}

func parity(v uint16) uint16 {
	var p uint16
	for ; v != 0; v >>= 1 {
		p ^= v & 1
	}
	return p
}

// Rx deframes bits into bytes.
type Rx struct {
	f       Format
	putByte func(byte)
	state   int // 0 hunting for start, >0 bits received + 1
	armed   bool
	shift   uint16
	// FramingErrors counts characters whose stop bit was 0; ParityErrors
	// those with bad parity. Such characters are dropped.
	FramingErrors int
	ParityErrors  int
}

// NewRx returns a deframer delivering bytes to putByte.
func NewRx(f Format, putByte func(byte)) *Rx {
	return &Rx{f: f, putByte: putByte}
}

// Reset forgets a partial character (carrier loss) and waits for marks.
func (r *Rx) Reset() { r.state, r.armed = 0, false }

// PutBit feeds one received bit.
func (r *Rx) PutBit(bit int) {
	bit &= 1
	if r.state == 0 {
		// A start bit counts only after a mark: after a framing error
		// the deframer waits for the line to go back to mark instead of
		// taking a data bit for a start bit.
		if bit == 1 {
			r.armed = true
		} else if r.armed {
			r.state, r.shift = 1, 0
		}
		return
	}
	n := r.f.DataBits
	if r.f.Parity != None {
		n++
	}
	if r.state <= n {
		r.shift |= uint16(bit) << (r.state - 1)
		r.state++
		return
	}
	// Stop bit (a second stop bit is not required on receive, V.14 §3).
	r.state = 0
	if bit == 0 {
		r.FramingErrors++
		r.armed = false
		return
	}
	v := r.shift & (1<<r.f.DataBits - 1)
	if r.f.Parity != None {
		p := parity(v)
		if r.f.Parity == Odd {
			p ^= 1
		}
		if p != r.shift>>r.f.DataBits&1 {
			r.ParityErrors++
			return
		}
	}
	r.putByte(byte(v))
}

// Queue returns a byte source for NewTx that first idles for lead bits
// (a carrier's marks before data) and then yields data once.
func Queue(data []byte, lead int) func() (byte, bool) {
	return func() (byte, bool) {
		if lead > 0 || len(data) == 0 {
			lead--
			return 0, false
		}
		b := data[0]
		data = data[1:]
		return b, true
	}
}
