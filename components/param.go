package components

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Param is one parameter of a component type: its default and the values
// it accepts. The schema (blueprints/schema.cue) is where these facts live,
// the default as a @default(...) attribute and the range as CUE bounds; a
// Param is their Go copy, which Provision applies. TestParamsAgreeWithSchema
// walks every component of the schema and fails when a Param differs from
// it, or when a parameter is in one and not the other.
type Param struct {
	// Name is the parameter's key in a policy.
	Name string
	// Kind is the type of its values.
	Kind Kind
	// Default is the value when a policy leaves the parameter out: a
	// float64 (Number), an int (Integer), a time.Duration (DurationKind), a
	// bool, a string or, for a StringList, nil. nil when there is none: the parameter is required,
	// or its default is derived from other parameters.
	Default any
	// Range is the values a Number, Integer or DurationKind parameter
	// accepts (a duration in nanoseconds). The zero Range accepts only 0.
	Range Range
}

// Kind is the type of a parameter's values.
type Kind int

// The kinds of parameter values.
const (
	Number Kind = iota
	Integer
	DurationKind
	Bool
	String
	// StringList is a list of strings ([]string).
	StringList
	// DurationMap maps strings to durations (map[string]Duration).
	DurationMap
)

// Range is an interval of parameter values, possibly further restricted.
// Build one from AtLeast, Above or Unbounded.
type Range struct {
	// Min and Max are the bounds, ±Inf when there is none.
	Min, Max float64
	// MinOpen and MaxOpen exclude the bound itself.
	MinOpen, MaxOpen bool
	// MultipleOf, when not 0, is what every value must be a multiple of.
	MultipleOf float64
	// NonZero excludes 0.
	NonZero bool
}

// Unbounded accepts every finite value.
var Unbounded = Range{Min: math.Inf(-1), Max: math.Inf(1)}

// AtLeast is [min, +Inf).
func AtLeast(min float64) Range { return Range{Min: min, Max: math.Inf(1)} }

// Above is (min, +Inf).
func Above(min float64) Range { return Range{Min: min, Max: math.Inf(1), MinOpen: true} }

// AtMost is r with the upper bound max, included.
func (r Range) AtMost(max float64) Range { r.Max, r.MaxOpen = max, false; return r }

// Below is r with the upper bound max, excluded.
func (r Range) Below(max float64) Range { r.Max, r.MaxOpen = max, true; return r }

// Multiples is r restricted to the multiples of n.
func (r Range) Multiples(n float64) Range { r.MultipleOf = n; return r }

// WithoutZero is r without 0.
func (r Range) WithoutZero() Range { r.NonZero = true; return r }

// Contains reports whether v is in r. NaN and ±Inf never are.
func (r Range) Contains(v float64) bool {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return false
	case v < r.Min || (r.MinOpen && v == r.Min):
		return false
	case v > r.Max || (r.MaxOpen && v == r.Max):
		return false
	case r.NonZero && v == 0:
		return false
	case r.MultipleOf != 0 && math.Mod(v, r.MultipleOf) != 0:
		return false
	}
	return true
}

// String says what r accepts, such as "in (0, 1]" or ">= 1".
func (r Range) String() string {
	return r.describe(func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) })
}

// describe says what r accepts, such as "in (0, 1]" or ">= 1", with
// bounds formatted by format.
func (r Range) describe(format func(float64) string) string {
	lowInf, highInf := math.IsInf(r.Min, -1), math.IsInf(r.Max, 1)
	var s string
	switch {
	case lowInf && highInf:
		s = "finite"
	case highInf:
		s = map[bool]string{false: ">= ", true: "> "}[r.MinOpen] + format(r.Min)
	case lowInf:
		s = map[bool]string{false: "<= ", true: "< "}[r.MaxOpen] + format(r.Max)
	default:
		s = "in " + map[bool]string{false: "[", true: "("}[r.MinOpen] + format(r.Min) + ", " +
			format(r.Max) + map[bool]string{false: "]", true: ")"}[r.MaxOpen]
	}
	if r.NonZero {
		s += " and not 0"
	}
	if r.MultipleOf != 0 {
		s += " and a multiple of " + format(r.MultipleOf)
	}
	return s
}

// check returns an error naming p and v unless r contains v.
func (p Param) check(v float64, shown string) error {
	if p.Range.Contains(v) {
		return nil
	}
	format := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	if p.Kind == DurationKind {
		format = func(f float64) string { return time.Duration(f).String() }
	}
	return fmt.Errorf("%s %s: must be %s", p.Name, shown, p.Range.describe(format))
}

// Float returns *v, or p's default when v is nil, and an error when the
// value is outside p's range.
func (p Param) Float(v *float64) (float64, error) {
	x, ok := p.Default.(float64)
	if v != nil {
		x, ok = *v, true
	}
	if !ok {
		return 0, fmt.Errorf("%s is required", p.Name)
	}
	return x, p.check(x, strconv.FormatFloat(x, 'g', -1, 64))
}

// Int is Float for an Integer parameter.
func (p Param) Int(v *int) (int, error) {
	x, ok := p.Default.(int)
	if v != nil {
		x, ok = *v, true
	}
	if !ok {
		return 0, fmt.Errorf("%s is required", p.Name)
	}
	return x, p.check(float64(x), strconv.Itoa(x))
}

// Duration is Float for a DurationKind parameter.
func (p Param) Duration(v *Duration) (Duration, error) {
	d, ok := p.Default.(time.Duration)
	if v != nil {
		d, ok = time.Duration(*v), true
	}
	if !ok {
		return 0, fmt.Errorf("%s is required", p.Name)
	}
	return Duration(d), p.check(float64(d), d.String())
}

// Check returns an error when v, a value of p set without a pointer (a
// required parameter, or one whose zero value means "absent"), is outside
// p's range.
func (p Param) Check(v float64) error {
	shown := strconv.FormatFloat(v, 'g', -1, 64)
	if p.Kind == DurationKind {
		shown = time.Duration(v).String()
	}
	return p.check(v, shown)
}

// paramReader reads a component's parameters in turn and keeps the first
// error, so that a Provision lists its parameters without an error check
// after each.
type paramReader struct{ err error }

// Int is Param.Int, or 0 once an earlier read failed.
func (r *paramReader) Int(p Param, v *int) int { return readParam(r, p.Int, v) }

// Float is Param.Float, or 0 once an earlier read failed.
func (r *paramReader) Float(p Param, v *float64) float64 { return readParam(r, p.Float, v) }

// Duration is Param.Duration, or 0 once an earlier read failed.
func (r *paramReader) Duration(p Param, v *Duration) Duration { return readParam(r, p.Duration, v) }

func readParam[T any](r *paramReader, read func(*T) (T, error), v *T) T {
	var x T
	if r.err == nil {
		x, r.err = read(v)
	}
	return x
}
