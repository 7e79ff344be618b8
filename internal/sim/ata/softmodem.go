package ata

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/pion/rtp"

	"github.com/isp-box/isp-box/internal/sim/phone"
	"github.com/isp-box/isp-box/softmodem"
	"github.com/isp-box/isp-box/softmodem/g711"
)

// A line with LineConfig.Softmodem set carries its modem as audio, as the
// real PAP2T does: an outgoing call offers G.711 only (PCMU, PCMA), and
// the box's own software modem, as the calling modem, runs on the call's
// RTP. CONNECT comes once the modems have trained, at the rate they
// agreed; a lost carrier is NO CARRIER. The other side may be a
// softmodem too (the box's Modem(answer)): two of the project's
// softmodems then talk through the ATA and the PBX.
//
// Clocking: the line sends one 20 ms packet for each packet it receives,
// so its sample clock is the far end's, as an ATA's DSP slaved to the
// network would be. A far end that stops sending stops the line's audio
// too; the answering modem's carrier detect then ends the call, as it
// would on a dead line.

// rtpPath is what a re-INVITE may move: either kind of call media.
type rtpPath interface {
	remoteAddr() netip.AddrPort
	setRemote(netip.AddrPort)
}

// audioMedia is the RTP session of a softmodem call.
type audioMedia struct {
	callRTP
	pt    uint8
	law   g711.Law
	modem *softmodem.Modem
	stats *mediaCounters
	log   *slog.Logger
}

func newAudioMedia(conn *net.UDPConn, remote netip.AddrPort, f format, mod softmodem.Modulation, stats *mediaCounters, log *slog.Logger) *audioMedia {
	a := &audioMedia{pt: f.PT, stats: stats, log: log,
		modem: softmodem.New(softmodem.Config{Modulation: mod, Role: softmodem.Originate})}
	if f.PT == ptPCMA {
		a.law = g711.Alaw
	}
	a.init(conn, remote)
	return a
}

func (a *audioMedia) start() { a.run(a.loop) }

// end stops the audio and the modem (its Read then fails); the socket
// stays open for the next call. Safe to call more than once.
func (a *audioMedia) end() {
	a.stop()
	a.modem.Close()
}

// loop answers each received packet with one of the modem's, after
// checking it as the data path does (source, payload type, sequence).
func (a *audioMedia) loop() {
	defer a.wg.Done()
	buf, out := make([]byte, 2048), make([]byte, 2048)
	hdr := rtp.Header{Version: 2, PayloadType: a.pt, SequenceNumber: uint16(randUint32()), Timestamp: randUint32(),
		SSRC: randUint32(), Marker: true}
	var (
		pkt    rtp.Packet
		seq    rtpSeq
		rx, tx []int16
	)
	for {
		n, from, err := a.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-a.gone:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) || !errors.Is(err, os.ErrDeadlineExceeded) {
				a.log.Info("rtp receive", "err", err)
				return
			}
			continue
		}
		if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != a.remoteAddr() {
			a.stats.foreign.Add(1)
			continue
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil || pkt.Version != 2 || pkt.PayloadType != a.pt || len(pkt.Payload) == 0 || len(pkt.Payload) > 480 {
			// RFC 2833 events and comfort noise too: not modem audio.
			a.stats.badPayload.Add(1)
			continue
		}
		if !seq.accept(&pkt, a.stats) {
			continue
		}
		a.stats.pktRecv.Add(1)
		a.stats.bytesRecv.Add(uint64(len(pkt.Payload)))
		rx, tx = rx[:0], tx[:0]
		for range pkt.Payload {
			rx, tx = append(rx, 0), append(tx, 0)
		}
		a.law.Decode(rx, pkt.Payload)
		a.modem.Process(rx, tx)
		hn, err := hdr.MarshalTo(out)
		if err != nil {
			a.log.Error("rtp header", "err", err)
			return
		}
		a.law.Encode(out[hn:hn+len(tx)], tx)
		if _, err := a.conn.WriteToUDPAddrPort(out[:hn+len(tx)], a.remoteAddr()); err != nil {
			a.log.Debug("rtp send", "err", err)
		}
		a.stats.pktSent.Add(1)
		a.stats.bytesSent.Add(uint64(len(tx)))
		hdr.SequenceNumber++
		hdr.Timestamp += uint32(len(tx))
		hdr.Marker = false
	}
}

// waitConnect waits until the modems train, the carrier is lost, or
// stop is closed.
func (a *audioMedia) waitConnect(stop <-chan struct{}) error {
	for {
		switch a.modem.State() {
		case softmodem.StateData:
			return nil
		case softmodem.StateCarrierLost:
			return errors.New("carrier lost in training")
		case softmodem.StateSilence, softmodem.StateAnswerTone, softmodem.StateTraining:
			// still training: wait for the next change below
		}
		select {
		case <-a.modem.Changed():
		case <-a.gone:
			return errors.New("call ended in training")
		case <-stop:
			return errors.New("gave up in training")
		}
	}
}

// audioCarrier is the phone.Carrier of a softmodem call: the modem's data.
type audioCarrier struct {
	l *Line
	c *call
	a *audioMedia
}

var _ phone.ErrorControl = (*audioCarrier)(nil)

// Read returns what the far modem sent; io.EOF once the carrier or the
// call is gone.
func (k *audioCarrier) Read(p []byte) (int, error) {
	n, err := k.a.modem.Read(p)
	if err != nil {
		return n, io.EOF
	}
	return n, nil
}

// Write queues p for the modem, holding off (as CTS would) while a second
// of line time is already waiting.
func (k *audioCarrier) Write(p []byte) (int, error) {
	limit := max(k.Speed()/8, 64)
	for k.a.modem.Pending() > limit {
		select {
		case <-k.a.gone:
			return 0, io.ErrClosedPipe
		case <-time.After(20 * time.Millisecond):
		}
	}
	n, err := k.a.modem.Write(p)
	if err != nil {
		return n, io.ErrClosedPipe
	}
	return n, nil
}

// Speed is the rate the modems agreed.
func (k *audioCarrier) Speed() int { return k.a.modem.Stats().Rate }

// ErrorControlled is false: the softmodems run V.22bis/V.22/V.21/Bell 103
// with no V.42 above them, so what a lost packet garbles stays garbled.
func (k *audioCarrier) ErrorControlled() bool { return false }

// Close hangs up: BYE to the far end, unless it hung up first.
func (k *audioCarrier) Close() error {
	k.l.endCall(k.c, true)
	return nil
}

// audioFormats is what a softmodem line offers: G.711 only (ITU-T V.152:
// voice-band data is G.711 without VAD or comfort noise).
func audioFormats() []format {
	return []format{
		{PT: ptPCMU, Encoding: "PCMU", Clock: 8000},
		{PT: ptPCMA, Encoding: "PCMA", Clock: 8000},
	}
}
