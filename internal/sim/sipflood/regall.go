package sipflood

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// RegisterAll registers lines name(0) … name(n-1), all with secret, as a
// bank of gateways does: line i from uas[i % len(uas)], each UA's lines
// one after another (RegisterAs is one at a time per UA), all UAs at
// once. It returns how many registrations failed and the first error.
func RegisterAll(ctx context.Context, uas []*UA, n int, name func(int) string, secret string, expires int) (failed int64, first error) {
	var wg sync.WaitGroup
	var nFailed atomic.Int64
	var firstErr atomic.Value
	for k, ua := range uas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < n; i += len(uas) {
				if err := ua.RegisterAs(ctx, name(i), secret, expires); err != nil {
					nFailed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %w", name(i), err))
				}
			}
		}()
	}
	wg.Wait()
	if e, ok := firstErr.Load().(error); ok {
		first = e
	}
	return nFailed.Load(), first
}
