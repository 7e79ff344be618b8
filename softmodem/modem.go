package softmodem

import (
	"errors"
	"fmt"
	"sync"

	"github.com/isp-box/isp-box/softmodem/async"
	"github.com/isp-box/isp-box/softmodem/dsp"
	"github.com/isp-box/isp-box/softmodem/fsk"
	"github.com/isp-box/isp-box/softmodem/tones"
	"github.com/isp-box/isp-box/softmodem/v22"
)

// Modulation is the data modulation of a call.
type Modulation int

const (
	V21 Modulation = iota
	Bell103
	V22    // 1200 bit/s
	V22bis // 2400 bit/s, falling back to 1200
)

func (m Modulation) String() string {
	switch m {
	case V21:
		return "V.21"
	case Bell103:
		return "Bell 103"
	case V22:
		return "V.22"
	case V22bis:
		return "V.22bis"
	}
	return fmt.Sprintf("Modulation(%d)", int(m))
}

// Rate is the highest data rate of the modulation in bit/s.
func (m Modulation) Rate() int {
	switch m {
	case V22:
		return 1200
	case V22bis:
		return 2400
	default: // V.21 and Bell 103: 300 bit/s
	}
	return 300
}

// ParseModulation reads a modulation name as written in the dial plan.
func ParseModulation(s string) (Modulation, error) {
	switch s {
	case "v21", "V21", "V.21":
		return V21, nil
	case "bell103", "Bell103", "bell 103", "Bell 103":
		return Bell103, nil
	case "v22", "V22", "V.22":
		return V22, nil
	case "v22bis", "V22bis", "V.22bis":
		return V22bis, nil
	}
	return 0, fmt.Errorf("softmodem: unknown modulation %q (want v21, bell103, v22 or v22bis)", s)
}

// Role is which end of the call the modem is.
type Role int

const (
	Answer    Role = iota // the called modem: sends ANS, transmits on the high channel
	Originate             // the calling modem
)

func (r Role) String() string {
	if r == Originate {
		return "originate"
	}
	return "answer"
}

// State is the phase of a modem's call.
//
//	silence -> answer tone -> training -> data -> carrier lost
//	(originate starts in training, waiting for the answering carrier)
type State int

const (
	StateSilence State = iota // V.25 billing delay
	StateAnswerTone
	StateTraining // carriers exchanged, not yet passing data
	StateData
	StateCarrierLost
)

func (s State) String() string {
	switch s {
	case StateSilence:
		return "silence"
	case StateAnswerTone:
		return "answer tone"
	case StateTraining:
		return "training"
	case StateData:
		return "data"
	case StateCarrierLost:
		return "carrier lost"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Config describes one modem.
type Config struct {
	Modulation Modulation
	Role       Role
	// Format is the character format, 8N1 when zero.
	Format async.Format
	// BillingDelay is the silence before the answer tone in ms (V.25
	// §5.2.1); 0 means the V.25 value, negative means none.
	BillingDelay int
	// ANSDuration is the answer tone's length in ms; 0 means V.25's 3.3 s.
	ANSDuration int
	// ANS selects the answer tone: by default /ANS (with phase
	// reversals) for FSK and plain ANS for V.22/V.22bis, which need no
	// echo canceller disabled (V.25 §5.2.2) and whose callers may take
	// the reversals for a carrier: spandsp 0.0.6's V.22bis caller trains
	// on /ANS and then fails.
	ANS ANSKind
	// Level is the transmit level in dBm0; 0 means -13 dBm0.
	Level float64
	// CarrierLossMillis is how long the remote carrier may vanish before
	// the call is declared lost; 0 means 1400 ms (the Hayes S10 default).
	CarrierLossMillis int
}

// ANSKind is the answer tone of Config.ANS.
type ANSKind int

const (
	ANSDefault   ANSKind = iota
	ANSPlain             // 2100 Hz
	ANSReversals         // 2100 Hz with a phase reversal every 450 ms
)

// ErrCarrierLost is returned by Read once the remote carrier is gone and
// every received byte has been read.
var ErrCarrierLost = errors.New("softmodem: carrier lost")

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("softmodem: closed")

// Stats is a snapshot of a modem's call.
type Stats struct {
	Modulation Modulation
	Role       Role
	State      State
	Rate       int
	// RxLevel is the received signal level in dBm0.
	RxLevel float64
	// SNR (dB), EQMSE (relative to the symbol power) and Retrains come
	// from the V.22/V.22bis receiver.
	SNR           float64
	EQMSE         float64
	Retrains      int
	TxBytes       int64
	RxBytes       int64
	FramingErrors int
	// Samples is how much audio the modem processed (8000 a second).
	Samples int64
}

// Modem is one software modem. Process is called by the media path with
// every block of received audio and fills the block to send; Read and
// Write carry the data from any goroutine.
type Modem struct {
	cfg Config

	// Audio-side state, owned by the goroutine that calls Process.
	state     State
	n         int64 // samples in the current state
	total     int64
	rxf, txf  []float64
	ans       *tones.ANSGenerator
	ansDet    *tones.ANSDetector
	fskTx     *fsk.Tx
	fskRx     *fsk.Rx
	v22       *v22.Pump // nil for FSK
	v22Start  bool
	atx       *async.Tx
	arx       *async.Rx
	carrierOn int64 // samples the remote carrier has been continuously present
	carrierOf int64 // samples it has been continuously absent
	level     dsp.PowerMeter

	mu     sync.Mutex
	rxq    []byte
	txq    []byte
	notify chan struct{} // closed and replaced when rxq grows or state changes
	closed bool
	stats  Stats
}

// New returns a modem at the start of its call.
func New(cfg Config) *Modem {
	if cfg.Format.DataBits == 0 {
		cfg.Format = async.Format8N1
	}
	if cfg.Level == 0 {
		cfg.Level = -13
	}
	if cfg.BillingDelay == 0 {
		cfg.BillingDelay = tones.BillingDelay
	}
	if cfg.ANSDuration == 0 {
		cfg.ANSDuration = tones.ANSDuration
	}
	if cfg.CarrierLossMillis == 0 {
		cfg.CarrierLossMillis = 1400
	}
	m := &Modem{cfg: cfg, notify: make(chan struct{}), level: dsp.NewPowerMeter(0.1)}
	rms := dsp.DBm0(cfg.Level)
	rev := cfg.ANS == ANSReversals || (cfg.ANS == ANSDefault && cfg.Modulation.Rate() == 300)
	m.ans = tones.NewANS(rms, rev)
	m.ansDet = tones.NewANSDetector()
	m.atx = async.NewTx(cfg.Format, m.getByte)
	m.arx = async.NewRx(cfg.Format, m.putByte)
	txSpec, rxSpec := fsk.V21Ch2, fsk.V21Ch1
	if cfg.Modulation == Bell103 {
		txSpec, rxSpec = fsk.Bell103Ans, fsk.Bell103Orig
	}
	if cfg.Role == Originate {
		txSpec, rxSpec = rxSpec, txSpec
	}
	if cfg.Modulation == V22 || cfg.Modulation == V22bis {
		m.v22 = v22.New(cfg.Role == Originate, cfg.Modulation.Rate(), rms, m.atx.Bit, m.arx.PutBit)
	} else {
		m.fskTx = fsk.NewTx(txSpec, rms, m.atx.Bit)
		m.fskRx = fsk.NewRx(rxSpec, m.putBit)
	}
	m.stats = Stats{Modulation: cfg.Modulation, Role: cfg.Role}
	if m.v22 == nil {
		m.stats.Rate = cfg.Modulation.Rate()
	}
	switch {
	case cfg.Role == Originate:
		m.state = StateTraining
	case cfg.BillingDelay < 0:
		m.state = StateAnswerTone
	}
	m.stats.State = m.state
	return m
}

func ms(n int) int64 { return int64(n) * dsp.SampleRate / 1000 }

// Process consumes one block of received audio and writes the same number
// of samples to send into tx.
func (m *Modem) Process(rx, tx []int16) {
	if cap(m.rxf) < len(rx) {
		m.rxf = make([]float64, len(rx))
		m.txf = make([]float64, len(rx))
	}
	rxf, txf := m.rxf[:len(rx)], m.txf[:len(tx)]
	for i, x := range rx {
		rxf[i] = float64(x)
	}
	for _, x := range rxf {
		m.level.Push(x)
	}
	m.receive(rxf)
	m.transmit(txf)
	for i, x := range txf {
		tx[i] = dsp.Clip16(x)
	}
	m.total += int64(len(rx))
	m.mu.Lock()
	m.stats.Samples = m.total
	m.stats.RxLevel = m.level.DBm0()
	m.stats.FramingErrors = m.arx.FramingErrors
	if m.v22 != nil {
		st := m.v22.Stats()
		m.stats.Rate, m.stats.SNR, m.stats.EQMSE, m.stats.Retrains = st.Rate, st.SNR, st.MSE, st.Retrains
	}
	m.mu.Unlock()
}

func (m *Modem) receive(rx []float64) {
	if m.v22 != nil {
		if m.cfg.Role == Originate && m.state == StateTraining {
			// The answerer's ANS is not for the V.22bis receiver: it
			// would settle on the tone and miss the unscrambled ones.
			m.ansDet.Push(rx)
			if m.ansDet.Present {
				clear(rx)
			}
		}
		m.v22.Demodulate(rx)
		if m.v22.Carrier() {
			m.carrierOn += int64(len(rx))
			m.carrierOf = 0
		} else {
			m.carrierOn = 0
			m.carrierOf += int64(len(rx))
		}
		return
	}
	if m.state == StateTraining && m.cfg.Role == Originate {
		m.ansDet.Push(rx)
	}
	m.fskRx.Demodulate(rx)
	// Before data the far carrier must be a steady mark (and not our
	// ANS echo or the far ANS); in data, level alone keeps it up.
	up := m.fskRx.Marking() || (m.carrierOn > 0 && m.fskRx.Carrier())
	if m.state == StateData {
		up = m.fskRx.Carrier()
	}
	if up && !(m.cfg.Role == Originate && m.ansDet.Present) {
		m.carrierOn += int64(len(rx))
		m.carrierOf = 0
	} else {
		m.carrierOn = 0
		m.carrierOf += int64(len(rx))
	}
}

func (m *Modem) transmit(tx []float64) {
	m.n += int64(len(tx))
	switch m.state {
	case StateSilence:
		clear(tx)
		if m.n >= ms(m.cfg.BillingDelay) {
			m.setState(StateAnswerTone)
		}
	case StateAnswerTone:
		if m.n <= ms(m.cfg.ANSDuration) {
			m.ans.Generate(tx)
		} else {
			clear(tx)
		}
		if m.n >= ms(m.cfg.ANSDuration+tones.PostANSSilence) {
			m.setState(StateTraining)
		}
	case StateTraining:
		if m.v22 != nil {
			// The V.22bis handshake runs inside the pump (§6.3.1); the
			// answerer's starts with unscrambled ones after ANS.
			if !m.v22Start {
				m.v22.Start()
				m.v22Start = true
			}
			m.v22.Modulate(tx)
			if m.v22.Ready() {
				m.setState(StateData)
			}
			return
		}
		if m.cfg.Role == Originate && m.carrierOn < ms(150) && m.n < ms(150) {
			clear(tx) // not until the answering carrier is heard
			m.n = 0
			return
		}
		m.fskTx.Modulate(tx)
		// The far end's carrier for 150 ms, and our marks for 300 ms so
		// its receiver has seen our carrier and settled, before data.
		if m.carrierOn >= ms(150) && m.n >= ms(300) {
			m.setState(StateData)
		}
	case StateData:
		if m.v22 != nil {
			m.v22.Modulate(tx)
		} else {
			m.fskTx.Modulate(tx)
		}
		if m.carrierOf >= ms(m.cfg.CarrierLossMillis) {
			m.setState(StateCarrierLost)
		}
	case StateCarrierLost:
		clear(tx)
	}
}

func (m *Modem) setState(s State) {
	m.state, m.n = s, 0
	m.mu.Lock()
	m.stats.State = s
	if m.v22 != nil {
		// A reader woken by this change reads the rate agreed in
		// training, not the one of the block before (it saw 0).
		st := m.v22.Stats()
		m.stats.Rate, m.stats.SNR, m.stats.EQMSE, m.stats.Retrains = st.Rate, st.SNR, st.MSE, st.Retrains
	}
	m.wakeLocked()
	m.mu.Unlock()
}

func (m *Modem) wakeLocked() {
	close(m.notify)
	m.notify = make(chan struct{})
}

// getByte feeds the async framer; it runs on the audio goroutine.
func (m *Modem) getByte() (byte, bool) {
	if m.state != StateData {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.txq) == 0 {
		return 0, false
	}
	b := m.txq[0]
	m.txq = m.txq[1:]
	m.stats.TxBytes++
	return b, true
}

// putBit deframes every bit while the carrier is up, so character
// framing is already in step when the first character comes.
func (m *Modem) putBit(bit int) {
	m.arx.PutBit(bit)
}

// putByte delivers a character once the far carrier has been steady for
// 150 ms: the far end may go to data a little before this end does, and
// its first characters must not be lost.
func (m *Modem) putByte(b byte) {
	// (V.22's pump hands over bits only once in data.)
	if m.v22 == nil && m.state != StateData && (m.state != StateTraining || m.carrierOn < ms(150)) {
		return
	}
	m.mu.Lock()
	m.rxq = append(m.rxq, b)
	m.stats.RxBytes++
	m.wakeLocked()
	m.mu.Unlock()
}

// State returns the call's phase.
func (m *Modem) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats.State
}

// Stats returns a snapshot of the call's figures.
func (m *Modem) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Changed returns a channel closed at the next state change or arrival of
// data.
func (m *Modem) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.notify
}

// Read returns received bytes, waiting for some. After the carrier is lost
// and the queue is empty it returns ErrCarrierLost.
func (m *Modem) Read(p []byte) (int, error) {
	for {
		m.mu.Lock()
		if len(m.rxq) > 0 {
			n := copy(p, m.rxq)
			m.rxq = m.rxq[n:]
			m.mu.Unlock()
			return n, nil
		}
		if m.closed {
			m.mu.Unlock()
			return 0, ErrClosed
		}
		if m.stats.State == StateCarrierLost {
			m.mu.Unlock()
			return 0, ErrCarrierLost
		}
		ch := m.notify
		m.mu.Unlock()
		<-ch
	}
}

// TakeReceived returns and clears what has been received, without waiting.
func (m *Modem) TakeReceived() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.rxq
	m.rxq = nil
	return b
}

// Write queues data to send; it is sent once the call is in data state.
func (m *Modem) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	m.txq = append(m.txq, p...)
	return len(p), nil
}

// Pending is the number of queued bytes not yet sent.
func (m *Modem) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.txq)
}

// Close ends the modem: readers and writers get ErrClosed.
func (m *Modem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.wakeLocked()
	}
	return nil
}
