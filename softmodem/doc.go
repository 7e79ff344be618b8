// Package softmodem is the box's own software modem: it turns the G.711
// audio of a SIP call into a byte stream, with no hardware modem on the ISP
// side. The DSP building blocks live in subpackages by concern:
//
//   - g711: μ-law and A-law companding (ITU-T G.711)
//   - dsp: oscillators, filters, tone detectors, power meters, impairments
//   - tones: the V.25 answer tone (2100 Hz with phase reversals) and its detector
//   - fsk: V.21 and Bell 103 300 bit/s frequency-shift keying
//   - async: start/stop character framing (V.14 style) over a bit pump
//
// A Modem (this package) strings them together into the answer or
// originate sequence of one modulation and exposes the data as an
// io.ReadWriter while the caller feeds it audio blocks.
package softmodem
