package testbed

import (
	"container/heap"
	"math"
	"time"
)

// sharingState is a processor-sharing service's calls in virtual time.
//
// Every call in service gets the same speed, 1 while the calls are no
// more than the workers and workers/n for n above them, so all of them
// have received the same work since any instant at which they were all in
// service. clock is that work since the run began (the sharing's virtual
// time, in worker-nanoseconds per call): a call that enters at clock c
// with a time of d ends when clock reaches c + d, whatever joins or
// leaves meanwhile. The calls are a heap by that finish, and the
// earliest one's end is the service's next event (nextAt), computed again
// whenever the number of calls or of the workers changes.
type sharingState struct {
	clock  float64 // per-call work received since the run began, ns
	at     int64   // when clock was last advanced
	nextAt int64   // when the earliest call ends; -1: none is running
	seq    uint64
	jobs   sharingHeap
	done   []int32 // scratch of sharingDone
}

// rate is the speed of each call in service on w workers.
func (p *sharingState) rate(w int) float64 {
	if n := p.jobs.Len(); n > w {
		return float64(w) / float64(n)
	}
	return 1
}

// advance brings clock to now at the speed the calls have had since the
// last change.
func (p *sharingState) advance(now int64, workers int) {
	if p.jobs.Len() > 0 {
		p.clock += float64(now-p.at) * p.rate(workers)
	}
	p.at = now
}

type sharingJob struct {
	finish float64 // clock at which the call ends
	seq    uint64  // ties end in order of entry
	req    int32
	time   int64 // the call's time on a worker of its own, ns
}

type sharingHeap []sharingJob

func (h sharingHeap) Len() int { return len(h) }
func (h sharingHeap) Less(i, j int) bool {
	return h[i].finish < h[j].finish || (h[i].finish == h[j].finish && h[i].seq < h[j].seq)
}
func (h sharingHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *sharingHeap) Push(x any)   { *h = append(*h, x.(sharingJob)) }
func (h *sharingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sharingEnter starts request idx's current call at processor-sharing
// service si; r.queued is now.
func (v *virtualRun) sharingEnter(si int, idx int32) {
	s := &v.services[si]
	s.account(v.now)
	s.ps.advance(v.now, s.workers)
	d := v.callTime(idx)
	heap.Push(&s.ps.jobs, sharingJob{finish: s.ps.clock + float64(d), seq: s.ps.seq, req: idx, time: d})
	s.ps.seq++
	s.busy = min(s.ps.jobs.Len(), s.workers)
	v.sharingSchedule(si)
}

// sharingSchedule sets when the next call at service si ends, as the
// calls and workers are now.
func (v *virtualRun) sharingSchedule(si int) {
	s := &v.services[si]
	s.ps.nextAt = -1
	if s.ps.jobs.Len() == 0 || s.workers <= 0 {
		return // no calls, or no worker to run them until workers return
	}
	left := s.ps.jobs[0].finish - s.ps.clock
	s.ps.nextAt = v.now + int64(math.Ceil(max(left, 0)/s.ps.rate(s.workers)))
}

// nextSharing is the processor-sharing service whose next call ends
// first, or -1.
func (v *virtualRun) nextSharing() int {
	best := -1
	for _, i := range v.sharing {
		if at := v.services[i].ps.nextAt; at >= 0 && (best < 0 || at < v.services[best].ps.nextAt) {
			best = i
		}
	}
	return best
}

// sharingDone ends the calls at service si whose work is done, and moves
// their requests on. The time a call took beyond its own is its wait (the
// service's queueing signal).
func (v *virtualRun) sharingDone(si int) {
	s := &v.services[si]
	s.account(v.now)
	s.ps.advance(v.now, s.workers)
	s.ps.done = s.ps.done[:0]
	// The event fell on the first whole nanosecond at or after the
	// finish; calls within a nanosecond of it end with it.
	for s.ps.jobs.Len() > 0 && s.ps.jobs[0].finish <= s.ps.clock+1 {
		j := heap.Pop(&s.ps.jobs).(sharingJob)
		wait := max(v.now-v.requests[j.req].queued-j.time, 0)
		s.waitNs += wait
		s.started++
		s.total.waitNs += wait
		s.total.started++
		if s.dagor != nil {
			s.dagor.Started(v.now, time.Duration(wait))
		}
		s.ps.done = append(s.ps.done, j.req)
	}
	s.busy = min(s.ps.jobs.Len(), s.workers)
	v.sharingSchedule(si)
	// proceed enters next calls, never ends one: done stays as it is.
	for _, idx := range s.ps.done {
		v.proceed(idx)
	}
}
