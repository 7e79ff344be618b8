package vj

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// tcp builds an IPv4/TCP packet with correct IP and TCP checksums.
type tcp struct {
	src, dst     [4]byte
	sport, dport uint16
	seq, ack     uint32
	flags        byte
	win, urp     uint16
	id           uint16
	ttl          byte
	opts         []byte // TCP options, multiple of 4
	data         []byte
}

func (t tcp) build() []byte {
	thl := 20 + len(t.opts)
	total := 20 + thl + len(t.data)
	p := make([]byte, total)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	binary.BigEndian.PutUint16(p[4:], t.id)
	p[6] = 0x40 // DF
	p[8] = t.ttl
	if p[8] == 0 {
		p[8] = 64
	}
	p[9] = 6
	copy(p[12:], t.src[:])
	copy(p[16:], t.dst[:])
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:20], 0))
	th := p[20:]
	binary.BigEndian.PutUint16(th[0:], t.sport)
	binary.BigEndian.PutUint16(th[2:], t.dport)
	binary.BigEndian.PutUint32(th[4:], t.seq)
	binary.BigEndian.PutUint32(th[8:], t.ack)
	th[12] = byte(thl/4) << 4
	th[13] = t.flags
	binary.BigEndian.PutUint16(th[14:], t.win)
	binary.BigEndian.PutUint16(th[18:], t.urp)
	copy(th[20:], t.opts)
	copy(th[thl:], t.data)
	// TCP checksum over the pseudo-header.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			v := uint32(b[i]) << 8
			if i+1 < len(b) {
				v |= uint32(b[i+1])
			}
			sum += v
		}
	}
	add(p[12:20])
	sum += 6 + uint32(len(th))
	add(th)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(th[16:], ^uint16(sum))
	return p
}

const (
	ack = tcpACK
	psh = tcpPSH
)

// roundTrip compresses and decompresses pkts in order and checks every
// packet comes out identical; it returns the protocols used and the total
// header octets sent.
func roundTrip(t *testing.T, cidComp bool, pkts [][]byte) (types []uint16, hdrBytes int) {
	t.Helper()
	c := NewCompressor(15, cidComp)
	d := NewDecompressor(15)
	for i, p := range pkts {
		typ, out := c.Compress(nil, p)
		types = append(types, typ)
		hdrBytes += len(out) - (len(p) - 40)
		var got []byte
		var err error
		if typ == TypeIP {
			got = out
		} else {
			got, err = d.Decompress(nil, typ, out)
		}
		if err != nil {
			t.Fatalf("packet %d (type %#x): %v", i, typ, err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("packet %d (type %#x) changed:\n got % x\nwant % x", i, typ, got, p)
		}
	}
	return types, hdrBytes
}

var (
	hostA = [4]byte{192, 168, 32, 105}
	hostB = [4]byte{93, 184, 216, 34}
)

func TestBulkTransfer(t *testing.T) {
	// A downloads: B sends 536-octet segments, A acks every other one.
	var pkts [][]byte
	seq, id := uint32(1000), uint16(77)
	for i := range 20 {
		pkts = append(pkts, tcp{src: hostB, dst: hostA, sport: 80, dport: 1025, seq: seq, ack: 5000, flags: ack | psh, win: 8760, id: id, data: bytes.Repeat([]byte{byte(i)}, 536)}.build())
		seq += 536
		id++
	}
	types, hdr := roundTrip(t, true, pkts)
	if types[0] != TypeUncompressed {
		t.Errorf("first packet type %#x", types[0])
	}
	for i, ty := range types[1:] {
		if ty != TypeCompressed {
			t.Errorf("packet %d not compressed", i+1)
		}
	}
	// 19 compressed headers of 3 octets (changes, checksum: SPECIAL_D) + one full.
	if hdr > 40+19*3 {
		t.Errorf("header octets %d, want ≤ %d", hdr, 40+19*3)
	}
}

func TestInteractiveEcho(t *testing.T) {
	// telnet: A types a char, B echoes it; both directions share the
	// compressor of the side that sends, so build B's stream.
	var pkts [][]byte
	seq, ackn, id := uint32(100), uint32(900), uint16(1)
	for range 10 {
		pkts = append(pkts, tcp{src: hostB, dst: hostA, sport: 23, dport: 1030, seq: seq, ack: ackn, flags: ack | psh, win: 4096, id: id, data: []byte("x")}.build())
		seq++
		ackn++
		id++
	}
	types, _ := roundTrip(t, false, pkts)
	for i, ty := range types[1:] {
		if ty != TypeCompressed {
			t.Errorf("echo %d type %#x", i+1, ty)
		}
	}
}

func TestMixedStreams(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	type conn struct {
		sport    uint16
		seq, ack uint32
		id       uint16
		win      uint16
		last     int
	}
	conns := make([]*conn, 20) // more than 16 slots: LRU replacement
	for i := range conns {
		conns[i] = &conn{sport: uint16(2000 + i), seq: r.Uint32(), ack: r.Uint32(), id: uint16(r.Uint32()), win: 8192}
	}
	var pkts [][]byte
	for range 2000 {
		c := conns[r.IntN(len(conns))]
		var data []byte
		switch r.IntN(4) {
		case 0: // pure ack
			c.ack += uint32(r.IntN(3000))
		case 1: // data
			data = make([]byte, 1+r.IntN(1400))
		case 2: // window change + urgent
			c.win += uint16(r.IntN(1000)) - 500
			data = []byte("!")
		case 3: // retransmission: same seq as before
			data = make([]byte, c.last)
			c.seq -= uint32(c.last)
		}
		flags := byte(ack)
		var urp uint16
		if r.IntN(10) == 0 {
			flags |= tcpURG
			urp = uint16(r.IntN(600))
		}
		if len(data) > 0 && r.IntN(2) == 0 {
			flags |= psh
		}
		if r.IntN(50) == 0 {
			c.id += uint16(r.IntN(70000))
		}
		var opts []byte
		if r.IntN(30) == 0 {
			opts = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps
		}
		pkts = append(pkts, tcp{src: hostB, dst: hostA, sport: c.sport, dport: 80, seq: c.seq, ack: c.ack, flags: flags, win: c.win, urp: urp, id: c.id, opts: opts, data: data}.build())
		c.seq += uint32(len(data))
		c.last = len(data)
		c.id++
	}
	// non-TCP and SYN pass as IP
	udp := tcp{src: hostA, dst: hostB, id: 9}.build()
	udp[9] = 17
	pkts = append(pkts, udp, tcp{src: hostA, dst: hostB, sport: 1, dport: 2, flags: tcpSYN, id: 3}.build())
	for _, cid := range []bool{false, true} {
		types, _ := roundTrip(t, cid, pkts)
		n := map[uint16]int{}
		for _, ty := range types {
			n[ty]++
		}
		if n[TypeCompressed] < 500 || n[TypeUncompressed] < 20 || n[TypeIP] != 2 {
			t.Errorf("cid %v: type counts %v", cid, n)
		}
	}
}

func TestTossAfterLoss(t *testing.T) {
	c := NewCompressor(15, true)
	d := NewDecompressor(15)
	mk := func(seq uint32, id uint16) []byte {
		return tcp{src: hostB, dst: hostA, sport: 80, dport: 1025, seq: seq, ack: 1, flags: ack, win: 100, id: id, data: []byte("abcd")}.build()
	}
	typ, out := c.Compress(nil, mk(0, 1))
	if _, err := d.Decompress(nil, typ, out); err != nil {
		t.Fatal(err)
	}
	c.Compress(nil, mk(4, 2)) // lost on the line
	d.Toss()
	typ, out = c.Compress(nil, mk(8, 3))
	if _, err := d.Decompress(nil, typ, out); err == nil {
		t.Fatal("compressed packet after a loss was accepted")
	}
	// A decompressor with no state refuses compressed packets too.
	if _, err := NewDecompressor(15).Decompress(nil, TypeCompressed, []byte{0, 1, 2, 3}); err == nil {
		t.Fatal("accepted with no state")
	}
}

// FuzzVJ: arbitrary TCP header streams round-trip, and arbitrary input to
// the decompressor never panics.
func FuzzVJ(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, []byte{0x4b, 1, 2, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0}, []byte{0x40, 0, 0, 0})
	f.Fuzz(func(t *testing.T, script, junk []byte) {
		c := NewCompressor(3, true)
		d := NewDecompressor(3)
		seq, ackn, id, win := uint32(1), uint32(1), uint16(1), uint16(1000)
		for len(script) >= 4 {
			s := script[:4]
			script = script[4:]
			seq += uint32(s[0]) * uint32(s[1]&0x3f)
			ackn += uint32(s[1]) << (s[2] % 24)
			id += uint16(s[2] % 3)
			win += uint16(int8(s[3]))
			flags := byte(ack) | s[3]&(psh|tcpURG)
			var urp uint16
			if flags&tcpURG != 0 {
				urp = uint16(s[0])
			}
			p := tcp{src: hostA, dst: hostB, sport: uint16(s[0] % 5), dport: 80, seq: seq, ack: ackn, flags: flags, win: win, urp: urp, id: id, data: make([]byte, s[2]%40)}.build()
			typ, out := c.Compress(nil, p)
			got := out
			if typ != TypeIP {
				var err error
				if got, err = d.Decompress(nil, typ, out); err != nil {
					t.Fatalf("decompress: %v", err)
				}
			}
			if !bytes.Equal(got, p) {
				t.Fatalf("round trip:\n got % x\nwant % x", got, p)
			}
		}
		d2 := NewDecompressor(3)
		d2.Decompress(nil, TypeUncompressed, junk)
		d2.Decompress(nil, TypeCompressed, junk)
	})
}
