package testbed

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize/convex/lp"
)

// The two references a run is measured against (DESIGN.md §8), per API at
// given offered rates and worker counts:
//
//   - proportional: the offered mix scaled down uniformly until every
//     bounded service fits (App.capacityShares, capped at the offered
//     rate). A fair share, not the limit.
//   - optimal: the physical limit, the linear program
//
//     maximise   Σᵢ wᵢ·xᵢ
//     subject to Σᵢ costᵢ,ₛ·xᵢ ≤ workersₛ·1 s  for every bounded service s
//     0 ≤ xᵢ ≤ offeredᵢ
//
//     where costᵢ,ₛ is API i's mean service time at s summed over its
//     visits, and wᵢ its PriorityWeight. With equal costs the two nearly
//     coincide; with very different costs at a shared bottleneck the
//     optimum admits the cheap API first and can be far above proportional.

// proportionalRates is the proportional reference: each API's capacity
// share at the offered rates, at most its offered rate, in req/s.
func (a App) proportionalRates(rates []float64, workers []float64) []float64 {
	shares := a.capacityShares(rates, workers)
	for i := range shares {
		shares[i] = math.Min(shares[i], rates[i])
	}
	return shares
}

// optimalTieBreak is the relative objective bonus that makes the optimum
// favour the more important API among allocations of equal weighted
// goodput, so that the per-API optimum does not depend on the simplex's
// pivoting order.
const optimalTieBreak = 1e-6

// optimalRates is the optimal reference: the solution of the LP above at
// the offered rates (req/s) and worker counts. APIs that load no bounded
// service are admitted in full.
func (a App) optimalRates(rates []float64, workers []float64) ([]float64, error) {
	x := make([]float64, len(a.APIs))
	// Variables are the admitted fractions yᵢ = xᵢ/offeredᵢ ∈ [0, 1] of the
	// APIs that are offered load and cost some bounded service; rows are
	// the bounded services they load. Fractions keep the LP well scaled
	// whatever the rates.
	var vars, rows []int
	for i := range a.APIs {
		if rates[i] <= 0 {
			continue
		}
		x[i] = rates[i]
		for s := range a.Services {
			if workers[s] > 0 && a.demand(i)[s] > 0 {
				vars = append(vars, i)
				break
			}
		}
	}
	if len(vars) == 0 {
		return x, nil
	}
	for s := range a.Services {
		if workers[s] == 0 {
			continue
		}
		for _, i := range vars {
			if a.demand(i)[s] > 0 {
				rows = append(rows, s)
				break
			}
		}
	}
	worst := 1
	for i := range a.APIs {
		worst = max(worst, a.APIs[i].Priority)
	}
	n := len(vars)
	// In the simplex's standard form, minimise cᵀz subject to A z = b and
	// z ≥ 0, with z the fractions then one slack per constraint: a row per
	// bounded service (utilisation ≤ 1), then a row per fraction (yᵢ ≤ 1).
	// The objective is the negated weighted goodput in units of offered load.
	m := len(rows) + n
	c := make([]float64, n+m)
	for j, i := range vars {
		bonus := 1 + optimalTieBreak*float64(worst-a.APIs[i].Priority+1)
		c[j] = -a.APIs[i].weight() * rates[i] * bonus
	}
	A := mat.NewDense(m, n+m, nil)
	b := make([]float64, m)
	for r, s := range rows {
		for j, i := range vars {
			A.Set(r, j, a.demand(i)[s]*rates[i]/workers[s])
		}
	}
	for j := range vars {
		A.Set(len(rows)+j, j, 1)
	}
	for r := range m {
		A.Set(r, n+r, 1)
		b[r] = 1
	}
	// The slacks are a feasible basis: nothing admitted, every row slack.
	basis := make([]int, m)
	for r := range basis {
		basis[r] = n + r
	}
	_, y, err := lp.Simplex(c, A, b, 1e-10, basis)
	if err != nil {
		return nil, fmt.Errorf("testbed: optimal admission of app %s at rates %v: %w", a.Name, rates, err)
	}
	for j, i := range vars {
		x[i] = rates[i] * min(max(y[j], 0), 1)
	}
	return x, nil
}

// weight is the API's priority weight in the optimal reference, default 1.
func (api API) weight() float64 {
	if api.PriorityWeight == 0 {
		return 1
	}
	return api.PriorityWeight
}
