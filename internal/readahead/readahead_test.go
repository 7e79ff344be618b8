package readahead

import (
	"sync"
	"testing"
)

// TestOrder: Unread goes in front, Append behind, a short Read leaves the
// rest for the next, and the buffer does not alias what it was given.
func TestOrder(t *testing.T) {
	var r Buffer
	if n, ok := r.Read(make([]byte, 4)); ok || n != 0 {
		t.Fatalf("empty Read = %d, %v", n, ok)
	}
	if b := r.Take(); b != nil {
		t.Fatalf("empty Take = %q", b)
	}
	mid := []byte("mid")
	r.Append(mid)
	r.Append([]byte("-end"))
	r.Unread([]byte("start-"))
	mid[0] = 'X' // the caller's slice is its own again
	p := make([]byte, 4)
	var got []byte
	for {
		n, ok := r.Read(p)
		if !ok {
			break
		}
		got = append(got, p[:n]...)
		if n == 4 && len(got) == 4 {
			r.Unread([]byte("[again]"))
		}
	}
	if want := "star[again]t-mid-end"; string(got) != want {
		t.Errorf("read %q, want %q", got, want)
	}
	r.Append([]byte("tail"))
	if b := r.Take(); string(b) != "tail" {
		t.Errorf("Take = %q", b)
	}
	if n, ok := r.Read(p); ok {
		t.Errorf("Read after Take = %d bytes", n)
	}
}

// TestConcurrent runs the methods from several goroutines for the race
// detector, and checks no byte is lost or doubled.
func TestConcurrent(t *testing.T) {
	var r Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				r.Append([]byte{1})
			}
		})
	}
	total := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	p := make([]byte, 3)
	for {
		n, _ := r.Read(p)
		total += n
		select {
		case <-done:
			total += len(r.Take())
			if total != 4000 {
				t.Errorf("read %d bytes, want 4000", total)
			}
			return
		default:
		}
	}
}
