package engine

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/components"
)

// checkSetCaps refuses a policy set over Caps' totals of policies,
// components, signals and evaluations a second, before any of it is
// compiled: a set of small files must not cost the host more than one
// large policy set may. The specs are counted in order (files in name
// order, the policies of a file in its order), and each total is reported
// once, at the policy that crosses it.
func checkSetCaps(specs []Spec) Diagnostics {
	caps := Caps.withDefaults()
	var diags Diagnostics
	var components, signals int
	var perSecond float64
	crossed := map[string]bool{}
	over := func(what string, s Spec, total, limit int, field string) {
		if total <= limit || crossed[what] {
			return
		}
		crossed[what] = true
		diags = append(diags, Diagnostic{Pos: s.Pos, Message: fmt.Sprintf(
			"policy %q: the policy set has %s, over the cap of %d (engine.Caps.%s): this policy and those before it (files in name order) come to %d",
			s.Name, what, limit, field, total)})
	}
	for i, s := range specs {
		components += len(s.Components)
		for _, c := range s.Components {
			signals += len(c.Out)
		}
		// An interval outside the caps' range is Compile's error; the
		// shortest allowed one counts here.
		interval := max(s.EvaluationInterval, caps.MinEvaluationInterval)
		perSecond += float64(len(s.Components)) / interval.Seconds()
		over("more policies", s, i+1, caps.PoliciesPerSet, "PoliciesPerSet")
		over("more components", s, components, caps.ComponentsPerSet, "ComponentsPerSet")
		over("more signals", s, signals, caps.SignalsPerSet, "SignalsPerSet")
		over("more component evaluations a second (components ÷ evaluation_interval)", s, int(min(perSecond, 1<<62)), caps.EvaluationsPerSecond, "EvaluationsPerSecond")
	}
	return diags
}

// checkPolicyFiles refuses more policy files than Caps.PoliciesPerSet,
// before any is evaluated: every file declares at least one policy, so a
// set within the cap never needs more, and each costs an evaluation. The
// first file past the cap is the error; it and the files after it are
// not evaluated (their sources become nil).
func checkPolicyFiles(files []string, srcs [][]byte) ([][]byte, Diagnostics) {
	limit := Caps.withDefaults().PoliciesPerSet
	if len(files) <= limit {
		return srcs, nil
	}
	srcs = slices.Clone(srcs)
	clear(srcs[limit:])
	return srcs, Diagnostics{{Pos: Position{File: files[limit], Line: 1, Col: 1}, Message: fmt.Sprintf(
		"%d policy files, over the cap of %d (engine.Caps.PoliciesPerSet; every file declares a policy): this file and those after it in name order are not loaded",
		len(files), limit)}}
}

// checkAPILabels refuses a set whose policies select more distinct API
// labels than Caps.APILabelsPerControlPoint at one control point, or
// than Caps.APILabelsPerSet at all of them, all policies together: each
// label a policy selects is tracked on its own for as long as the engine
// runs, with its counters exported. The component that crosses a cap is
// the error. Labels that get no state of their own ("*", OverflowAPI,
// and those no request could be counted under on its own) do not count.
func checkAPILabels(set []*Running) Diagnostics {
	caps := Caps.withDefaults()
	var diags Diagnostics
	labels := map[string]map[string]bool{} // by control point
	total := 0
	crossed := map[string]bool{} // control points over the cap
	for _, r := range set {
		for _, n := range r.Circuit.declaring() {
			cp, selected := apiLabelsOf(n.comp)
			if crossed[cp] {
				continue
			}
			known := labels[cp]
			if known == nil {
				known = map[string]bool{}
				labels[cp] = known
			}
			before := len(known)
			for _, label := range selected {
				known[label] = true
			}
			total += len(known) - before
			switch {
			case len(known) > caps.APILabelsPerControlPoint:
				crossed[cp] = true
				diags = append(diags, Diagnostic{Pos: n.spec.Pos, Message: fmt.Sprintf(
					"%s: the policies select more than %d API labels at control point %q (engine.Caps.APILabelsPerControlPoint): this component brings them to %d",
					n.spec.Path, caps.APILabelsPerControlPoint, cp, len(known))})
			case total > caps.APILabelsPerSet:
				return append(diags, Diagnostic{Pos: n.spec.Pos, Message: fmt.Sprintf(
					"%s: the policies select more than %d API labels at all control points together (engine.Caps.APILabelsPerSet): this component brings them to %d",
					n.spec.Path, caps.APILabelsPerSet, total)})
			}
		}
	}
	return diags
}

// declaring is the circuit's sources and sinks in declaration order: the
// components that declare API labels at control points when attached.
func (c *Circuit) declaring() []*node {
	nodes := append(slices.Clone(c.sources), c.sinks...)
	slices.SortFunc(nodes, func(a, b *node) int { return a.index - b.index })
	return nodes
}

// apiLabelsOf is the control point of a source or sink and the API labels
// it makes the engine declare there (Engine.attach): its selector's and,
// for a flux meter, its per-API SLOs'. Labels that get no state of their
// own are left out.
func apiLabelsOf(comp components.Component) (controlPoint string, labels []string) {
	var sel components.Selector
	var slos map[string]time.Duration
	switch c := comp.(type) {
	case components.Source:
		sel, slos = c.Selector(), sourceAPISLOs(c)
	case components.Sink:
		sel = c.Selector()
	default:
		return "", nil
	}
	add := func(label string) {
		if counted := controlpoint.CountedAs(label); counted != controlpoint.AllAPIs && counted != controlpoint.OverflowAPI {
			labels = append(labels, label)
		}
	}
	add(sel.API)
	for _, label := range slices.Sorted(maps.Keys(slos)) {
		add(label)
	}
	return sel.ControlPoint, labels
}
