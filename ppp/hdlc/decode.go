package hdlc

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
)

// DefaultMaxFrame bounds a received frame (address, control, protocol,
// information and FCS) when no MRU is set: 1500 octets of information plus
// headroom, as pppd's ppp_async accepts.
const DefaultMaxFrame = 1500 + 8

// Stats counts what the deframer saw. The counters are updated atomically
// so another goroutine (the sessions list) may read them.
type Stats struct {
	Frames    atomic.Uint64 // good frames returned
	Octets    atomic.Uint64 // octets read from the line
	FCSErrors atomic.Uint64 // frames whose FCS did not check (dropped)
	TooLong   atomic.Uint64 // frames longer than MaxFrame (dropped)
	Runts     atomic.Uint64 // frames shorter than protocol + FCS (dropped)
	Aborts    atomic.Uint64 // frames ended by 0x7D 0x7E (RFC 1662 §4.4.1)
	// Unmapped counts frames that only checked with their unescaped control
	// characters kept: the peer had switched to a smaller ACCM before our
	// owner did (the switch and the frames race on the line).
	Unmapped atomic.Uint64
}

// removal records a control character dropped at offset pos of the frame.
type removal struct {
	pos int
	c   byte
}

// Reader reads frames from an asynchronous byte stream. It is owned by one
// goroutine (ReadFrame is not safe for concurrent use); SetACCM and
// SetMaxFrame may be called from another goroutine.
type Reader struct {
	r     io.Reader
	buf   []byte
	start int
	end   int

	frame   []byte    // unescaped octets of the frame being assembled
	removed []removal // control characters taken out by the receive ACCM
	esc     bool      // an escape octet ended the previous chunk
	toss    bool      // discarding until the next flag

	accm     atomic.Uint32 // our receive ACCM: flagged control chars are removed
	maxFrame atomic.Int64
	err      error

	// Stats are the deframer's counters.
	Stats Stats
}

// NewReader returns a Reader over r. Octets before the first flag are
// discarded (modem text, a half frame), as Linux ppp_async does.
func NewReader(r io.Reader) *Reader {
	d := &Reader{r: r, buf: make([]byte, 4096), toss: true}
	d.accm.Store(DefaultACCM)
	d.maxFrame.Store(DefaultMaxFrame)
	return d
}

// SetACCM sets the receive ACCM. RFC 1662 §7.1: control characters flagged in
// it that arrive unescaped were inserted by equipment on the way and are
// removed before the FCS is computed.
func (d *Reader) SetACCM(accm uint32) { d.accm.Store(accm) }

// SetMaxFrame sets the largest frame accepted, FCS included.
func (d *Reader) SetMaxFrame(n int) { d.maxFrame.Store(int64(n)) }

// Buffered returns the octets read from the stream but not yet consumed.
func (d *Reader) Buffered() []byte { return d.buf[d.start:d.end] }

// ReadFrame returns the next frame whose FCS checks, without the FCS: the
// address/control (unless compressed), protocol and information fields.
// The slice is valid until the next call. Bad frames are dropped and counted.
// It returns the underlying reader's error (io.EOF when the line closes).
func (d *Reader) ReadFrame() ([]byte, error) {
	d.frame = d.frame[:0]
	for {
		if d.start == d.end {
			if d.err != nil {
				return nil, d.err
			}
			n, err := d.r.Read(d.buf)
			d.start, d.end = 0, n
			d.Stats.Octets.Add(uint64(n))
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = io.EOF
				}
				d.err = err
			}
			continue
		}
		chunk := d.buf[d.start:d.end]
		i := bytes.IndexByte(chunk, Flag)
		seg := chunk
		if i >= 0 {
			seg = chunk[:i]
			d.start += i + 1
		} else {
			d.start = d.end
		}
		if !d.toss {
			d.add(seg)
		}
		if i < 0 {
			continue
		}
		if f, ok := d.endFrame(); ok {
			return f, nil
		}
	}
}

// add unescapes seg onto the frame being assembled.
func (d *Reader) add(seg []byte) {
	maxLen := int(d.maxFrame.Load())
	accm := d.accm.Load()
	for len(seg) > 0 {
		if d.esc {
			d.esc = false
			d.frame = append(d.frame, seg[0]^xorBit)
			seg = seg[1:]
			continue
		}
		j := bytes.IndexByte(seg, Escape)
		run := seg
		if j >= 0 {
			run = seg[:j]
			seg = seg[j+1:]
			d.esc = true
		} else {
			seg = nil
		}
		if accm == 0 {
			d.frame = append(d.frame, run...)
		} else {
			for _, c := range run {
				if c < 0x20 && accm&(1<<c) != 0 {
					d.removed = append(d.removed, removal{len(d.frame), c})
					continue
				}
				d.frame = append(d.frame, c)
			}
		}
		if len(d.frame) > maxLen {
			d.Stats.TooLong.Add(1)
			d.toss, d.esc = true, false
			d.frame = d.frame[:0]
			d.removed = d.removed[:0]
			return
		}
	}
}

// endFrame handles a flag: it checks the frame assembled so far.
func (d *Reader) endFrame() ([]byte, bool) {
	f := d.frame
	removed := d.removed
	d.frame = d.frame[:0]
	d.removed = d.removed[:0]
	if d.toss {
		d.toss, d.esc = false, false
		return nil, false
	}
	if d.esc {
		// RFC 1662 §4.4.1: 0x7D 0x7E aborts the frame.
		d.esc = false
		d.Stats.Aborts.Add(1)
		return nil, false
	}
	switch {
	case len(f) == 0:
		return nil, false // back-to-back flags: inter-frame fill
	case len(f) < 3: // smallest: compressed protocol + FCS
		d.Stats.Runts.Add(1)
		return nil, false
	case FCS16(InitFCS, f) != GoodFCS:
		if g := restore(f, removed); g != nil && FCS16(InitFCS, g) == GoodFCS {
			d.Stats.Unmapped.Add(1)
			d.Stats.Frames.Add(1)
			d.frame = g[:0] // keep the larger buffer
			return g[:len(g)-2], true
		}
		d.Stats.FCSErrors.Add(1)
		return nil, false
	}
	d.Stats.Frames.Add(1)
	return f[:len(f)-2], true
}

// restore rebuilds a frame with the removed control characters put back,
// or returns nil if none were removed.
func restore(f []byte, removed []removal) []byte {
	if len(removed) == 0 {
		return nil
	}
	g := make([]byte, 0, len(f)+len(removed))
	prev := 0
	for _, r := range removed {
		g = append(g, f[prev:r.pos]...)
		g = append(g, r.c)
		prev = r.pos
	}
	return append(g, f[prev:]...)
}
