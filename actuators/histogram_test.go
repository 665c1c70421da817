package actuators

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"unsafe"
)

const (
	microsecondNs = int64(1e3)
	secondNs      = int64(1e9)
)

// nearestRank returns the q-quantile of sorted values by the definition
// HistogramCounts.QuantileNs uses: the ceil(q·n)-th smallest value.
func nearestRank(sorted []int64, q float64) int64 {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[min(rank, len(sorted))-1]
}

func TestHistogramQuantilesAreWithinTwoPercentOfTheTruth(t *testing.T) {
	cases := []struct {
		name string
		draw func(r *rand.Rand) int64
	}{
		{"log-uniform from 1µs to 100s", func(r *rand.Rand) int64 {
			return int64(math.Exp(math.Log(1e3) + r.Float64()*(math.Log(1e11)-math.Log(1e3))))
		}},
		{"uniform from 1µs to 100s", func(r *rand.Rand) int64 {
			return microsecondNs + r.Int64N(100*secondNs-microsecondNs)
		}},
		{"uniform from 1µs to 2µs", func(r *rand.Rand) int64 { return microsecondNs + r.Int64N(microsecondNs) }},
		{"exponential with a 20ms mean", func(r *rand.Rand) int64 { return microsecondNs + int64(r.ExpFloat64()*20e6) }},
		{"bimodal: 90% near 5ms, 10% near 80s", func(r *rand.Rand) int64 {
			if r.IntN(10) == 0 {
				return 80*secondNs + r.Int64N(secondNs)
			}
			return 5e6 + r.Int64N(1e6)
		}},
	}
	quantiles := []float64{0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var h Histogram
			values := make([]int64, 100_000)
			for i := range values {
				values[i] = tc.draw(r)
				h.Record(values[i])
			}
			slices.Sort(values)
			var counts HistogramCounts
			h.Drain(&counts)
			if got := counts.Total(); got != uint64(len(values)) {
				t.Fatalf("Total() = %d, want %d", got, len(values))
			}
			for _, q := range quantiles {
				want := float64(nearestRank(values, q))
				got := counts.QuantileNs(q)
				if relErr := math.Abs(got-want) / want; relErr > 0.02 {
					t.Errorf("q=%v: got %.0fns, want %.0fns (relative error %.4f > 0.02)", q, got, want, relErr)
				}
			}
		})
	}
}

// TestHistogramEveryValueInRangeReadsBackWithinTwoPercent sweeps single
// values geometrically across the whole range, including every power of two
// and its neighbours, where bucket boundaries sit.
func TestHistogramEveryValueInRangeReadsBackWithinTwoPercent(t *testing.T) {
	var values []int64
	for v := float64(microsecondNs); v <= 137*float64(secondNs); v *= 1.003 {
		values = append(values, int64(v))
	}
	for e := 10; e <= 37; e++ {
		values = append(values, 1<<e-1, 1<<e, 1<<e+1)
	}
	worst := 0.0
	for _, v := range values {
		if v >= histogramMaxNs+1 {
			continue
		}
		var counts HistogramCounts
		counts[histogramBucket(v)]++
		relErr := math.Abs(counts.QuantileNs(0.5)-float64(v)) / float64(v)
		worst = max(worst, relErr)
		if relErr > 0.02 {
			t.Errorf("%dns reads back as %.0fns (relative error %.4f)", v, counts.QuantileNs(0.5), relErr)
		}
	}
	// The midpoint of a bucket 1/32 of its lower bound wide is within 1/64.
	if worst > 1.0/64 {
		t.Errorf("worst relative error %.5f, want at most 1/64", worst)
	}
}

func TestHistogramClampsOutOfRangeValuesIntoTheEndBuckets(t *testing.T) {
	cases := []struct {
		name       string
		latencyNs  int64
		wantBucket int
	}{
		{"negative", -5, 0},
		{"zero", 0, 0},
		{"below 512ns", 100, 0},
		{"512ns is the first bucket's lower bound", 512, 0},
		{"1µs is in [992ns, 1008ns)", 1000, 30},
		{"the largest value in range", histogramMaxNs, histogramBuckets - 1},
		{"2^37 ns", histogramMaxNs + 1, histogramBuckets - 1},
		{"an hour", 3600 * secondNs, histogramBuckets - 1},
		{"max int64", math.MaxInt64, histogramBuckets - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			h.Record(tc.latencyNs)
			var counts HistogramCounts
			h.Drain(&counts)
			if counts[tc.wantBucket] != 1 || counts.Total() != 1 {
				t.Errorf("Record(%d) did not land (only) in bucket %d", tc.latencyNs, tc.wantBucket)
			}
		})
	}
}

func TestHistogramQuantileOfNothingOrOutOfRangeIsNaN(t *testing.T) {
	var empty HistogramCounts
	var one HistogramCounts
	one[histogramBucket(5e6)]++
	cases := []struct {
		name   string
		counts *HistogramCounts
		q      float64
	}{
		{"empty", &empty, 0.5},
		{"q below 0", &one, -0.1},
		{"q above 1", &one, 1.1},
		{"q NaN", &one, math.NaN()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.counts.QuantileNs(tc.q); !math.IsNaN(got) {
				t.Errorf("QuantileNs(%v) = %v, want NaN", tc.q, got)
			}
		})
	}
}

func TestHistogramDrainResetsAndAccumulates(t *testing.T) {
	var h Histogram
	var counts HistogramCounts
	h.Record(1e6)
	h.Record(2e6)
	h.Drain(&counts)
	h.Record(3e6)
	h.Drain(&counts)
	if got := counts.Total(); got != 3 {
		t.Errorf("two drains into one HistogramCounts hold %d values, want 3", got)
	}
	var again HistogramCounts
	h.Drain(&again)
	if got := again.Total(); got != 0 {
		t.Errorf("a drained histogram still holds %d values", got)
	}
}

func TestHistogramMemoryIsAFixedSizeArray(t *testing.T) {
	field := reflect.TypeFor[Histogram]().Field(0)
	if field.Type.Kind() != reflect.Array {
		t.Fatalf("Histogram stores its counters in a %v, want a fixed-size array", field.Type.Kind())
	}
	if size, want := unsafe.Sizeof(Histogram{}), uintptr(histogramBuckets*8+histogramWords*8); size != want || size > 8<<10 {
		t.Errorf("Histogram is %d bytes, want %d (at most 8 KiB)", size, want)
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	v := int64(0)
	if allocs := testing.AllocsPerRun(1000, func() {
		v += 12345
		h.Record(v)
	}); allocs != 0 {
		t.Errorf("Record allocates %v times per call, want 0", allocs)
	}
}

func TestHistogramQuantilesInOnePassMatchQuantileNs(t *testing.T) {
	var h Histogram
	for i := int64(1); i <= 1000; i++ {
		h.Record(i * i * 997 % (50 * ms))
	}
	var counts HistogramCounts
	h.Drain(&counts)
	for _, qs := range [][]float64{
		{0.5, 0.9, 0.95, 0.99},
		{0, 0.001, 0.5, 0.5, 1},
		{0.99, 0.5, 0.9}, // out of order
		{-1, 0.5, math.NaN(), 0.9, 2},
	} {
		got := make([]float64, len(qs))
		counts.QuantilesNs(qs, got)
		w := Window{Completed: counts.Total(), LatencyCounts: counts}
		gotMs := make([]float64, len(qs))
		w.QuantilesMs(qs, gotMs)
		for i, q := range qs {
			want := counts.QuantileNs(q)
			if got[i] != want && !(math.IsNaN(got[i]) && math.IsNaN(want)) {
				t.Errorf("QuantilesNs(%v)[%d] = %v, want QuantileNs(%v) = %v", qs, i, got[i], q, want)
			}
			if wantMs := w.QuantileMs(q); gotMs[i] != wantMs && !(math.IsNaN(gotMs[i]) && math.IsNaN(wantMs)) {
				t.Errorf("QuantilesMs(%v)[%d] = %v, want QuantileMs(%v) = %v", qs, i, gotMs[i], q, wantMs)
			}
		}
	}
	var empty HistogramCounts
	got := []float64{0}
	empty.QuantilesNs([]float64{0.5}, got)
	if !math.IsNaN(got[0]) {
		t.Errorf("empty histogram: QuantilesNs = %v, want NaN", got)
	}
}

func TestHistogramDrainReportsWhatItMoved(t *testing.T) {
	var h Histogram
	for _, v := range []int64{1 * ms, 1 * ms, 3 * ms, 90 * secondNs} {
		h.Record(v)
	}
	var counts HistogramCounts
	if n := h.Drain(&counts); n != 4 || counts.Total() != 4 {
		t.Errorf("Drain moved %d values (counts hold %d), want 4", n, counts.Total())
	}
	if n := h.Drain(&counts); n != 0 || counts.Total() != 4 {
		t.Errorf("a second Drain moved %d values (counts hold %d), want 0 and 4", n, counts.Total())
	}
}

// Drains racing with records on other goroutines lose nothing and count
// nothing twice: every value recorded is drained exactly once, into the
// bucket it was recorded in.
func TestHistogramDrainRacingRecordsLosesNothing(t *testing.T) {
	var h Histogram
	const writers, each = 4, 20000
	done := concurrently(writers, func(w int) {
		for i := range each {
			h.Record(int64(1000 + (i%7)*100000 + w))
		}
	})
	var got HistogramCounts
	for drains := 0; ; drains++ {
		select {
		case <-done:
			h.Drain(&got)
			var want HistogramCounts
			for w := range writers {
				for i := range each {
					want[histogramBucket(int64(1000+(i%7)*100000+w))]++
				}
			}
			if got != want {
				t.Fatalf("after %d drains the counts differ from what was recorded: %d values drained, %d recorded", drains, got.Total(), want.Total())
			}
			return
		default:
			h.Drain(&got)
		}
	}
}

// A recorder's window reads its quantiles from the buckets it marked, and
// they are the quantiles of every bucket; counts added by hand where no
// mark says, above and below the marked ones, are read too.
func TestWindowQuantilesFromMarkedBucketsMatchAllBuckets(t *testing.T) {
	r := NewRecorder(0)
	r.Snapshot(0)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		r.Arrive(0, true)
		r.Done(0, int64(rng.ExpFloat64()*5e6)+int64(rng.IntN(3))*100e6, true)
	}
	w := r.Snapshot(1e9)
	if !w.marked {
		t.Fatal("a recorder's window has no marks")
	}
	qs := []float64{0, 0.5, 0.9, 0.95, 0.99, 0.999, 1, 0.2}
	got, want := make([]float64, len(qs)), make([]float64, len(qs))
	w.QuantilesMs(qs, got)
	w.LatencyCounts.quantilesNs(w.Completed, qs, want)
	for i := range qs {
		if got[i] != want[i]/1e6 {
			t.Fatalf("q%v: %v ms from the marked buckets, %v ms from all", qs[i], got[i], want[i]/1e6)
		}
	}
	// By hand, 1000 values above every marked bucket and 10000 below.
	last, first := histogramBucket(100e9), histogramBucket(1000)
	w.LatencyCounts[last] += 1000
	w.LatencyCounts[first] += 10000
	w.Completed += 11000
	if p99 := w.QuantileMs(0.99); p99 != histogramMidpointNs(last)/1e6 {
		t.Fatalf("p99 %v ms after 1000 values added by hand at %v ms", p99, histogramMidpointNs(last)/1e6)
	}
	if p25 := w.QuantileMs(0.25); p25 != histogramMidpointNs(first)/1e6 {
		t.Fatalf("p25 %v ms after 10000 values added by hand at %v ms", p25, histogramMidpointNs(first)/1e6)
	}
}
