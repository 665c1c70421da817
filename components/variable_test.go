package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestVariable(t *testing.T) {
	for _, tc := range []struct {
		params string
		want   float64
	}{
		{`{"value":42}`, 42},
		{`{"value":0}`, 0},
		{`{"value":-1.5}`, -1.5},
	} {
		t.Run(tc.params, func(t *testing.T) {
			comp := mustProvisionComponent(t, "Variable", tc.params, time.Second)
			tick := tickIO{nil, []float64{tc.want}}
			runTickTable(t, comp, []tickIO{tick, tick, tick})
		})
	}
}

func TestVariableSet(t *testing.T) {
	comp := mustProvisionComponent(t, "Variable", `{"value":42}`, time.Second)
	v, ok := comp.(*components.Variable)
	if !ok {
		t.Fatalf("Variable is %T", comp)
	}
	runTickTable(t, comp, []tickIO{{nil, []float64{42}}})
	v.Set(7)
	runTickTable(t, comp, []tickIO{{nil, []float64{7}}, {nil, []float64{7}}})
	v.Set(components.Invalid)
	runTickTable(t, comp, []tickIO{{nil, []float64{components.Invalid}}})
}
