// Package readahead holds bytes taken from a stream before its consumer
// read them (a modem line looking for AutoPPP or a login, a harness waiting
// for a guest's first byte), so that the consumer's next Read returns them
// first and nothing is lost. It is a leaf: components import it without
// importing each other.
package readahead

import "sync"

// Buffer is safe for concurrent use; its zero value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  []byte
}

// Read moves buffered bytes into p, as io.Reader does; ok is false, and
// nothing is read, when the buffer is empty.
func (r *Buffer) Read(p []byte) (n int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.b) == 0 {
		return 0, false
	}
	n = copy(p, r.b)
	r.b = r.b[n:]
	return n, true
}

// Take returns everything buffered and empties the buffer; nil if empty.
func (r *Buffer) Take() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.b) == 0 {
		return nil
	}
	b := r.b
	r.b = nil
	return b
}

// Unread puts a copy of b in front of what is buffered.
func (r *Buffer) Unread(b []byte) {
	r.mu.Lock()
	r.b = append(append([]byte(nil), b...), r.b...)
	r.mu.Unlock()
}

// Append adds a copy of b after what is buffered.
func (r *Buffer) Append(b []byte) {
	r.mu.Lock()
	r.b = append(r.b, b...)
	r.mu.Unlock()
}
