package hdlc

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFCSCheckValue(t *testing.T) {
	// CRC-16/X-25 (= the PPP FCS) of "123456789" is 0x906E.
	if got := FCS16(InitFCS, []byte("123456789")) ^ 0xFFFF; got != 0x906E {
		t.Fatalf("FCS = %#04x, want 0x906e", got)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 100 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		if a, b := FCS16(InitFCS, p), fcs16Slow(InitFCS, p); a != b {
			t.Fatalf("len %d: sliced %#x, bytewise %#x", n, a, b)
		}
	}
}

// The first frame a real pppd 2.4.9 sends (read off the wire from the qemu VM of e2e/pppdvm): LCP
// Configure-Request id 1 <asyncmap 0x0> <magic> <pcomp> <accomp>, with every
// control character escaped because no ACCM is negotiated yet.
func TestEncodePppdFirstFrame(t *testing.T) {
	lcp := unhex(t, "01 01 00 14 02 06 00 00 00 00 05 06 1a 2b 3c 4d 07 02 08 02")
	e := NewEncoder()
	e.SetACCM(0) // even with ACCM 0 negotiated, LCP config packets use the default map
	got := e.AppendFrame(nil, AppendHeader(nil, 0xC021, false, false), lcp, true)
	wantPrefix := unhex(t, "7e ff 7d 23 c0 21 7d 21 7d 21 7d 20 7d 34 7d 22 7d 26 7d 20 7d 20 7d 20 7d 20 7d 25 7d 26 7d 3a 2b 3c 4d 7d 27 7d 22 7d 28 7d 22")
	if !bytes.HasPrefix(got, wantPrefix) {
		t.Fatalf("frame\n got % x\nwant % x...", got, wantPrefix)
	}
	d := NewReader(bytes.NewReader(got))
	f, err := d.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	proto, info, err := ParseHeader(f)
	if err != nil || proto != 0xC021 || !bytes.Equal(info, lcp) {
		t.Fatalf("decoded proto %#x info % x err %v", proto, info, err)
	}
}

func TestReaderCases(t *testing.T) {
	good := func(info string, accm uint32) []byte {
		e := NewEncoder()
		e.SetACCM(accm)
		return e.AppendFrame(nil, []byte{0xff, 0x03, 0x00, 0x21}, []byte(info), false)
	}
	corrupt := good("hello", 0)
	corrupt[6] ^= 1
	long := good(strings.Repeat("x", 2000), 0)
	tests := []struct {
		name   string
		in     []byte
		rxACCM uint32
		want   []string
		check  func(*Stats) bool
	}{
		{"garbage before first flag", append([]byte("\r\nCONNECT 28800\r\n"), good("a", 0)...), 0, []string{"a"}, nil},
		{"back to back, shared flag", append(good("a", 0), good("b", 0)[1:]...), 0, []string{"a", "b"}, nil},
		{"bad fcs dropped", append(corrupt, good("ok", 0)...), 0, []string{"ok"}, func(s *Stats) bool { return s.FCSErrors.Load() == 1 }},
		{"too long dropped", append(long, good("ok", 0)...), 0, []string{"ok"}, func(s *Stats) bool { return s.TooLong.Load() == 1 }},
		{"abort sequence", append([]byte{0x7e, 0xff, 0x7d, 0x7e}, good("ok", 0)...), 0, []string{"ok"}, func(s *Stats) bool { return s.Aborts.Load() == 1 }},
		{"runt", append([]byte{0x7e, 0x21, 0x7e}, good("ok", 0)...), 0, []string{"ok"}, func(s *Stats) bool { return s.Runts.Load() == 1 }},
		{"inserted XON removed by rx ACCM", insertAt(good("data", 0xFFFFFFFF), 2, 0x11), 0xFFFFFFFF, []string{"data"}, nil},
		{"escaped data octets", good("\x7e\x7d\x11\x00", 0xFFFFFFFF), 0xFFFFFFFF, []string{"\x7e\x7d\x11\x00"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// one octet per Read, to exercise state carried across chunks
			d := NewReader(&oneByteReader{tc.in})
			d.SetACCM(tc.rxACCM)
			var got []string
			for {
				f, err := d.ReadFrame()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				_, info, err := ParseHeader(f)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, string(info))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
			if tc.check != nil && !tc.check(&d.Stats) {
				t.Errorf("stats: fcs %d long %d runts %d aborts %d", d.Stats.FCSErrors.Load(), d.Stats.TooLong.Load(), d.Stats.Runts.Load(), d.Stats.Aborts.Load())
			}
		})
	}
}

func insertAt(b []byte, i int, c byte) []byte {
	return append(b[:i:i], append([]byte{c}, b[i:]...)...)
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in    string
		proto uint16
		ok    bool
	}{
		{"ff03c021", 0xC021, true},
		{"c021", 0xC021, true},
		{"21", 0x21, true},
		{"ff030021", 0x21, true},
		{"ff03", 0, false},
		{"0000", 0, false},
	}
	for _, tc := range tests {
		p, _, err := ParseHeader(unhex(t, tc.in))
		if (err == nil) != tc.ok || p != tc.proto {
			t.Errorf("%s: proto %#x err %v", tc.in, p, err)
		}
	}
}

// FuzzDeframe: any frame content survives encode→decode for any ACCM, and
// arbitrary input never makes the Reader panic or return a frame whose FCS
// does not check.
func FuzzDeframe(f *testing.F) {
	f.Add([]byte("\xff\x03\xc0\x21\x01\x01\x00\x04"), uint32(0xFFFFFFFF), []byte{0x7e, 0x7d, 0x5e})
	f.Add([]byte{0x21, 0x45, 0x7e, 0x7d}, uint32(0), []byte("CONNECT\r\n~\x7d"))
	f.Fuzz(func(t *testing.T, frame []byte, accm uint32, junk []byte) {
		e := NewEncoder()
		e.SetACCM(accm)
		if len(frame) >= 1 {
			enc := e.AppendFrame(nil, nil, frame, false)
			d := NewReader(bytes.NewReader(enc))
			d.SetACCM(accm)
			d.SetMaxFrame(len(frame) + 2)
			got, err := d.ReadFrame()
			if len(frame) >= 1 {
				if err != nil || !bytes.Equal(got, frame) {
					t.Fatalf("round trip: got % x err %v, want % x", got, err, frame)
				}
			}
		}
		d := NewReader(bytes.NewReader(junk))
		d.SetACCM(accm)
		for {
			g, err := d.ReadFrame()
			if err != nil {
				break
			}
			_ = g
		}
	})
}

// loopReader returns the same encoded stream forever.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

func payload(n int) []byte {
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range p {
		// typical IP traffic: random octets, so 2/256 need escaping with ACCM 0
		p[i] = byte(r.Uint32())
	}
	return p
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{64, 576, 1500} {
		b.Run(strings.Join([]string{"size", itoa(n)}, "="), func(b *testing.B) {
			e := NewEncoder()
			e.SetACCM(0)
			p := payload(n)
			hdr := AppendHeader(nil, 0x21, true, true)
			buf := make([]byte, 0, 2*n+16)
			b.SetBytes(int64(n))
			cpu := startCPU()
			for b.Loop() {
				buf = e.AppendFrame(buf[:0], hdr, p, false)
			}
			cpu.report(b, n)
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{64, 576, 1500} {
		b.Run(strings.Join([]string{"size", itoa(n)}, "="), func(b *testing.B) {
			e := NewEncoder()
			e.SetACCM(0)
			var stream []byte
			for range 64 {
				stream = e.AppendFrame(stream, AppendHeader(nil, 0x21, true, true), payload(n), false)
			}
			d := NewReader(&loopReader{b: stream})
			d.SetACCM(0)
			b.SetBytes(int64(n))
			cpu := startCPU()
			for b.Loop() {
				if _, err := d.ReadFrame(); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b, n)
		})
	}
}

func itoa(n int) string {
	return string(hex.EncodeToString([]byte{})) + func() string {
		s := ""
		for n > 0 {
			s = string(rune('0'+n%10)) + s
			n /= 10
		}
		return s
	}()
}

func BenchmarkFCS(b *testing.B) {
	p := payload(1500)
	b.SetBytes(1500)
	cpu := startCPU()
	for b.Loop() {
		FCS16(InitFCS, p)
	}
	cpu.report(b, 1500)
}

// cpuClock measures the process's CPU time, so that throughput can be
// reported per CPU-second ("per core") on a machine shared with other work,
// where wall-clock MB/s mostly measures the neighbours.
type cpuClock struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{cpuNow()} }

func (c cpuClock) report(b *testing.B, size int) {
	if d := cpuNow() - c.start; d > 0 {
		b.ReportMetric(float64(size)*float64(b.N)/d.Seconds()/1e6, "MB/cpu-s")
	}
}

// A peer that already uses ACCM 0 while we still expect the default map:
// its raw control characters must not cost the frame.
func TestUnmappedControlCharactersKept(t *testing.T) {
	e := NewEncoder()
	e.SetACCM(0)
	enc := e.AppendFrame(nil, []byte{0xc0, 0x23}, []byte{1, 1, 0, 14, 4, 'd', 'i', 'a', 'l', 4, 'd', 'i', 'a', 'l'}, false)
	d := NewReader(bytes.NewReader(enc))
	f, err := d.ReadFrame()
	if err != nil || !bytes.Equal(f[:3], []byte{0xc0, 0x23, 1}) || d.Stats.Unmapped.Load() != 1 {
		t.Fatalf("frame % x err %v unmapped %d", f, err, d.Stats.Unmapped.Load())
	}
}
