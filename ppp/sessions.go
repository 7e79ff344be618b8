package ppp

import (
	"maps"
	"slices"
	"sync"

	"github.com/isp-box/isp-box/internal/status"
)

// SessionInfo is a snapshot of one live session for `isp-box sessions`
// (internal/status's).
type SessionInfo = status.Session

// liveInfo is the part of a session other goroutines may read.
type liveInfo struct {
	mu    sync.Mutex
	info  SessionInfo // guarded by mu; counters are filled at snapshot
	stats *ioStats
	fcs   func() uint64
}

// setPhase and update do nothing on a nil liveInfo (a client session is
// not listed).
func (l *liveInfo) setPhase(p Phase, detail string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.info.Phase, l.info.Detail = p.String(), detail
	l.mu.Unlock()
}

func (l *liveInfo) update(fn func(*SessionInfo)) {
	if l == nil {
		return
	}
	l.mu.Lock()
	fn(&l.info)
	l.mu.Unlock()
}

func (l *liveInfo) snapshot() SessionInfo {
	l.mu.Lock()
	i := l.info
	i.DNS = slices.Clone(i.DNS)
	l.mu.Unlock()
	i.BytesIn, i.BytesOut = l.stats.BytesIn.Load(), l.stats.BytesOut.Load()
	i.PktsIn, i.PktsOut = l.stats.PktsIn.Load(), l.stats.PktsOut.Load()
	i.Dropped = l.stats.Dropped.Load()
	i.FCSErrs = l.fcs()
	return i
}

// Sessions is the registry of live sessions. Safe for concurrent use.
type Sessions struct {
	mu sync.Mutex
	m  map[string]*liveInfo // guarded by mu
}

// NewSessions returns an empty registry.
func NewSessions() *Sessions { return &Sessions{m: map[string]*liveInfo{}} }

func (s *Sessions) add(id string, l *liveInfo) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.m[id] = l
	s.mu.Unlock()
}

func (s *Sessions) remove(id string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// List returns a snapshot of every live session, oldest first.
func (s *Sessions) List() []SessionInfo {
	// Snapshots take each session's own lock: not under the registry's.
	s.mu.Lock()
	ls := slices.Collect(maps.Values(s.m))
	s.mu.Unlock()
	out := make([]SessionInfo, len(ls))
	for i, l := range ls {
		out[i] = l.snapshot()
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return a.Start.Compare(b.Start) })
	return out
}
