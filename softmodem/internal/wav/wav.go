// Package wav reads and writes the 16-bit mono PCM WAV files the tests
// exchange with minimodem (which uses libsndfile).
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

var errFormat = errors.New("wav: not a 16-bit mono PCM file")

// Write stores samples at rate Hz.
func Write(path string, rate int, samples []int16) error {
	b := make([]byte, 44+2*len(samples))
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*len(samples)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*len(samples)))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return os.WriteFile(path, b, 0o644)
}

// Read loads a file written by Write or by libsndfile.
func Read(path string) (rate int, samples []int16, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	return Parse(b)
}

// Parse decodes a WAV image, walking its chunks.
func Parse(b []byte) (rate int, samples []int16, err error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return 0, nil, fmt.Errorf("%w: no RIFF/WAVE header", errFormat)
	}
	b = b[12:]
	haveFmt := false
	for len(b) >= 8 {
		id := string(b[0:4])
		n := binary.LittleEndian.Uint32(b[4:8])
		b = b[8:]
		if uint64(n) > uint64(len(b)) {
			if id != "data" {
				return 0, nil, fmt.Errorf("%w: chunk %q of %d bytes in %d", errFormat, id, n, len(b))
			}
			n = uint32(len(b)) // libsndfile streaming writers may leave the size unset
		}
		body := b[:n]
		switch id {
		case "fmt ":
			if n < 16 || binary.LittleEndian.Uint16(body[0:]) != 1 ||
				binary.LittleEndian.Uint16(body[2:]) != 1 || binary.LittleEndian.Uint16(body[14:]) != 16 {
				return 0, nil, errFormat
			}
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			haveFmt = true
		case "data":
			if !haveFmt {
				return 0, nil, fmt.Errorf("%w: data before fmt", errFormat)
			}
			samples = make([]int16, n/2)
			for i := range samples {
				samples[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return rate, samples, nil
		}
		b = b[n:]
		if n%2 == 1 && len(b) > 0 {
			b = b[1:] // RIFF chunks are word aligned
		}
	}
	return 0, nil, fmt.Errorf("%w: no data chunk", errFormat)
}
