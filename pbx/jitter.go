package pbx

// jitterBuffer is the fixed playout buffer of a call the box terminates
// with its software modem. A modem needs every sample in its place: the
// buffer never stretches or squeezes time; a missing packet plays as
// silence (the modem's receiver sees a gap, as on a lossy line), and only
// when the far clock has drifted a whole buffer away does it jump (one
// slip, counted).
type jitterBuffer struct {
	ring    []int16
	have    []bool
	mask    uint32
	delay   uint32 // samples between a packet's arrival and its playout
	play    uint32 // timestamp of the next sample out
	started bool
	newest  uint32 // timestamp just past the newest sample in
	late    uint64 // packets (or parts) that came after their playout
	slips   uint64 // resynchronisations
	lateRun int
}

func newJitterBuffer(delay int) *jitterBuffer {
	const size = 1 << 13 // 1 s at 8 kHz
	return &jitterBuffer{ring: make([]int16, size), have: make([]bool, size), mask: size - 1, delay: uint32(delay)}
}

// put stores the samples of a packet with RTP timestamp ts.
func (j *jitterBuffer) put(ts uint32, samples []int16) {
	if !j.started {
		j.started = true
		j.play = ts - j.delay
		j.newest = ts
	}
	off := int32(ts - j.play)
	end := off + int32(len(samples))
	switch {
	case end <= 0:
		// Wholly late. A run of them means the far clock is slower
		// than ours and the buffer ran dry: start again at this packet.
		j.late++
		if j.lateRun++; j.lateRun >= 3 {
			j.resync(ts)
			off = int32(ts - j.play)
			break
		}
		return
	case end > int32(len(j.ring))-int32(j.delay):
		// Too far ahead: the far clock is faster (or a jump).
		j.resync(ts)
		off = int32(ts - j.play)
	}
	j.lateRun = 0
	for i, x := range samples {
		if off+int32(i) < 0 {
			continue
		}
		k := (ts + uint32(i)) & j.mask
		j.ring[k], j.have[k] = x, true
	}
	if e := ts + uint32(len(samples)); int32(e-j.newest) > 0 {
		j.newest = e
	}
}

func (j *jitterBuffer) resync(ts uint32) {
	clear(j.have)
	j.play = ts - j.delay
	j.newest = ts
	j.slips++
	j.lateRun = 0
}

// take fills out with the next samples, silence where none arrived. It
// reports how many samples were missing after the stream started.
func (j *jitterBuffer) take(out []int16) (missing int) {
	if !j.started {
		clear(out)
		return 0
	}
	for i := range out {
		k := (j.play + uint32(i)) & j.mask
		if j.have[k] {
			out[i] = j.ring[k]
			j.have[k] = false
		} else {
			out[i] = 0
			missing++
		}
	}
	j.play += uint32(len(out))
	return missing
}
