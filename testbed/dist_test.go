package testbed

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestDistSampleMatchesMeanAndShape(t *testing.T) {
	const samples = 200_000
	mean := 20 * time.Millisecond
	tests := []struct {
		name       string
		dist       Dist
		wantMedian time.Duration // tells the shapes apart, which the mean alone cannot
	}{
		{"constant always returns the mean", Dist{Kind: Constant, Mean: mean}, mean},
		{"exponential has median mean·ln2", Dist{Kind: Exponential, Mean: mean}, time.Duration(float64(mean) * math.Ln2)},
		{"lognormal has median mean·exp(-σ²/2)", Dist{Kind: Lognormal, Mean: mean, Sigma: 0.5}, time.Duration(float64(mean) * math.Exp(-0.125))},
		{"lognormal with σ=0 is constant", Dist{Kind: Lognormal, Mean: mean}, mean},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(42, 0))
			draws := make([]time.Duration, samples)
			var sum float64
			for i := range draws {
				draws[i] = tt.dist.Sample(rng)
				if draws[i] < 0 {
					t.Fatalf("sample %d is negative: %v", i, draws[i])
				}
				sum += float64(draws[i])
			}
			gotMean := time.Duration(sum / samples)
			slices.Sort(draws)
			gotMedian := draws[samples/2]
			if !within(gotMean, mean, 0.02) {
				t.Errorf("mean = %v, want %v ± 2%%", gotMean, mean)
			}
			if !within(gotMedian, tt.wantMedian, 0.02) {
				t.Errorf("median = %v, want %v ± 2%%", gotMedian, tt.wantMedian)
			}
		})
	}
}

func TestDistConstantIsExact(t *testing.T) {
	d := Dist{Kind: Constant, Mean: 1234567 * time.Nanosecond}
	rng := rand.New(rand.NewPCG(1, 0))
	for range 1000 {
		if got := d.Sample(rng); got != d.Mean {
			t.Fatalf("Sample = %v, want exactly %v", got, d.Mean)
		}
	}
}

func TestDistSameSeedSameSequence(t *testing.T) {
	for _, d := range []Dist{
		{Kind: Exponential, Mean: 10 * time.Millisecond},
		{Kind: Lognormal, Mean: 10 * time.Millisecond, Sigma: 1},
	} {
		a, b, other := rand.New(rand.NewPCG(7, 0)), rand.New(rand.NewPCG(7, 0)), rand.New(rand.NewPCG(8, 0))
		differs := false
		for i := range 1000 {
			x, y, z := d.Sample(a), d.Sample(b), d.Sample(other)
			if x != y {
				t.Fatalf("%s: draw %d differs between equal seeds: %v vs %v", d.Kind, i, x, y)
			}
			differs = differs || x != z
		}
		if !differs {
			t.Errorf("%s: seeds 7 and 8 gave the same 1000 draws", d.Kind)
		}
	}
}

func TestDistSamplePanicsOnUnknownKind(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Sample of Kind \"uniform\" did not panic")
		}
	}()
	Dist{Kind: "uniform", Mean: time.Millisecond}.Sample(rand.New(rand.NewPCG(1, 0)))
}

// within reports whether got is within a relative tolerance of want.
func within(got, want time.Duration, tolerance float64) bool {
	return math.Abs(float64(got-want)) <= tolerance*float64(want)
}
