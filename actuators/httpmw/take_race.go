//go:build race

package httpmw

import "sync/atomic"

// take is take_norace.go's, with atomics: the race detector does not see
// that pinning to a processor orders the goroutines that run on it, and
// would report the plain counter.
func (s *writerSlab) take() *readerFromWriter {
	i := atomic.LoadUint32(&s.taken)
	if i == writerSlabSize {
		return nil
	}
	atomic.StoreUint32(&s.taken, i+1)
	return &s.writers[i]
}
