package ppp

import (
	"sync"
)

// txQueue is the writer's queue: control frames are never dropped; data
// frames are dropped once dataLimit octets are waiting (a modem at 28.8k
// would otherwise buffer seconds of traffic).
type txQueue struct {
	mu        sync.Mutex
	frames    [][]byte
	isData    []bool
	dataBytes int
	closed    bool
	signal    chan struct{}
}

const dataLimit = 16 << 10

func (q *txQueue) push(f []byte, data bool) bool {
	q.mu.Lock()
	if q.closed || data && q.dataBytes > dataLimit {
		q.mu.Unlock()
		return false
	}
	q.frames = append(q.frames, f)
	q.isData = append(q.isData, data)
	if data {
		q.dataBytes += len(f)
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return true
}

// pop returns the queued frames; done is true once closed and empty.
func (q *txQueue) pop() (frames [][]byte, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	frames, q.frames, q.isData, q.dataBytes = q.frames, nil, nil, 0
	return frames, q.closed && len(frames) == 0
}

func (q *txQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}
