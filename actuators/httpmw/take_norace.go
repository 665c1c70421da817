//go:build !race

package httpmw

// take hands out the slab's next wrapper, or nil once all were. Its caller
// is pinned to the slab's processor, so no other goroutine takes from the
// slab meanwhile, and a plain counter is exact.
func (s *writerSlab) take() *readerFromWriter {
	i := s.taken
	if i == writerSlabSize {
		return nil
	}
	s.taken = i + 1
	return &s.writers[i]
}
