package testbed

import (
	"context"
	"strings"
	"testing"
	"time"
)

// dagorWindowOf feeds d one window that starts at start: counts[r]
// arrivals of rank r, each started after queueing for queued, and ends it
// a second later.
func dagorWindowOf(d *dagorShedder, start time.Duration, counts []int, queued time.Duration) {
	for rank, n := range counts {
		for range n {
			if d.Admit(int64(start), rank) {
				d.Started(int64(start), queued)
			}
		}
	}
	d.roll(int64(start + dagorWindow))
}

// uniform is n arrivals at every one of ranks ranks.
func uniform(ranks, n int) []int {
	counts := make([]int, ranks)
	for i := range counts {
		counts[i] = n
	}
	return counts
}

func TestDagorShedderMovesTheCutoffOncePerWindow(t *testing.T) {
	const ranks = 2 * dagorUserLevels // two business priorities
	for _, tc := range []struct {
		name       string
		cutoff     int // at the start; ranks is every rank
		counts     []int
		queued     time.Duration
		wantCutoff int
	}{
		{"above 20 ms the least important 5 % of the admitted go first",
			ranks, uniform(ranks, 1), 30 * time.Millisecond, 243}, // 256 → at most 243.2 pass
		{"the cut is 5 % of those admitted, not of all arrivals",
			200, uniform(ranks, 1), 30 * time.Millisecond, 190},
		{"a rank without arrivals is no step",
			ranks, append(uniform(ranks-10, 1), make([]int, 10)...), 30 * time.Millisecond, 233},
		{"exactly 20 ms is not overload",
			200, uniform(ranks, 1), 20 * time.Millisecond, 202},
		{"below 20 ms it relaxes so that 1 % more of the admitted pass", // 200 → at least 202
			200, uniform(ranks, 1), 5 * time.Millisecond, 202},
		{"a heavy rank above the cutoff is a step of its own",
			200, append(uniform(200, 1), uniform(ranks-200, 5)...), 5 * time.Millisecond, 201},
		{"with nothing arriving above the cutoff every rank passes again",
			100, append(uniform(100, 1), make([]int, ranks-100)...), 5 * time.Millisecond, ranks},
		{"a window in which nothing started is not overloaded",
			0, uniform(ranks, 1), 0, 1},
		{"relaxing stops at every rank",
			ranks, uniform(ranks, 1), 0, ranks},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDagorShedder(ranks)
			d.cutoff = tc.cutoff
			dagorWindowOf(d, 0, tc.counts, tc.queued)
			if d.cutoff != tc.wantCutoff {
				t.Errorf("cutoff = %d, want %d", d.cutoff, tc.wantCutoff)
			}
		})
	}
}

func TestDagorShedderShedsTheLowestPriorityFirst(t *testing.T) {
	const ranks = 2 * dagorUserLevels
	d := newDagorShedder(ranks)
	at := time.Duration(0)
	// Overloaded window after window, the cutoff falls through the user
	// priorities of business priority 2 (ranks 128–255) first: the first
	// window sheds only its least important users, and by the time any
	// rank of priority 1 is shed, all of priority 2 is.
	dagorWindowOf(d, at, uniform(ranks, 5), 50*time.Millisecond)
	at += dagorWindow
	if d.Admit(int64(at), ranks-1) || !d.Admit(int64(at), dagorUserLevels) {
		t.Errorf("after one overloaded window (cutoff %d) want the least important rank shed and priority 2's most important passing", d.cutoff)
	}
	for d.cutoff >= dagorUserLevels {
		dagorWindowOf(d, at, uniform(ranks, 5), 50*time.Millisecond)
		at += dagorWindow
	}
	if d.Admit(int64(at), dagorUserLevels) {
		t.Errorf("the most important rank of priority 2 passed at cutoff %d", d.cutoff)
	}
	if !d.Admit(int64(at), 0) {
		t.Errorf("the most important rank of priority 1 was shed at cutoff %d", d.cutoff)
	}
	// Unloaded from then on, it relaxes to every rank, most important first.
	for range 200 {
		before := d.cutoff
		dagorWindowOf(d, at, uniform(ranks, 5), time.Millisecond)
		at += dagorWindow
		if d.cutoff < before {
			t.Fatalf("at %v an unloaded window lowered the cutoff from %d to %d", at, before, d.cutoff)
		}
	}
	if d.cutoff != ranks {
		t.Errorf("after 200 unloaded windows the cutoff is %d, want %d", d.cutoff, ranks)
	}
}

func TestDagorShedder2000RequestsEndAWindowEarly(t *testing.T) {
	d := newDagorShedder(dagorUserLevels)
	for i := range dagorWindowRequests - 1 {
		if d.Admit(int64(time.Millisecond), i%dagorUserLevels) {
			d.Started(int64(time.Millisecond), 40*time.Millisecond)
		}
	}
	if d.cutoff != dagorUserLevels {
		t.Fatalf("cutoff = %d after %d requests, want it unmoved", d.cutoff, dagorWindowRequests-1)
	}
	d.Admit(int64(2*time.Millisecond), dagorUserLevels-1)
	if d.cutoff >= dagorUserLevels {
		t.Errorf("cutoff = %d after %d requests in 2 ms of overload, want it lowered", d.cutoff, dagorWindowRequests)
	}
	if d.arrived != 0 || d.started != 0 {
		t.Errorf("the next window starts with %d arrived and %d started, want 0 and 0", d.arrived, d.started)
	}
}

func TestDagorRanksOrderBusinessPriority(t *testing.T) {
	offsets, ranks := dagorRanks(Boutique()) // home 4, product 3, cart 2, checkout 1
	want := []int{3 * dagorUserLevels, 2 * dagorUserLevels, dagorUserLevels, 0}
	for i, o := range offsets {
		if o != want[i] {
			t.Errorf("%s: rank offset %d, want %d", Boutique().APIs[i].Name, o, want[i])
		}
	}
	if ranks != 4*dagorUserLevels {
		t.Errorf("ranks = %d, want %d", ranks, 4*dagorUserLevels)
	}
}

func TestDagorNeedsTheVirtualDriver(t *testing.T) {
	app := Boutique()
	s, err := NewScenario("steady", app, ScenarioOptions{Warmup: time.Second, Duration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Simulate(context.Background(), SimConfig{App: app, Scenario: s, Policy: DagorPolicy()})
	if err == nil || !strings.Contains(err.Error(), "--virtual") {
		t.Errorf("err = %v, want one that asks for --virtual", err)
	}
}
