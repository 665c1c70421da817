package components_test

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/components"
)

func TestAlerter(t *testing.T) {
	nan := components.Invalid
	for _, tc := range []struct {
		name, params, wantName string
		signals                []float64
		firing                 []bool
	}{
		{
			name:     "fires on each tick the signal is 1",
			wantName: "Load Shed Event",
			signals:  []float64{0, 1, 1, 0, nan, 1, nan},
			firing:   []bool{false, true, true, false, false, true, false},
		},
		{
			name:     "custom name",
			params:   `{"alert_name":"checkout shedding"}`,
			wantName: "checkout shedding",
			signals:  []float64{1, 0},
			firing:   []bool{true, false},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			comp := mustProvisionComponent(t, "Alerter", tc.params, time.Second)
			alert, ok := comp.(components.Alert)
			if !ok {
				t.Fatalf("Alerter %T is not an Alert", comp)
			}
			if len(comp.Ports().Out) != 0 {
				t.Fatalf("Alerter has outputs %v", comp.Ports().Out)
			}
			if _, firing := alert.Firing(); firing {
				t.Error("firing before the first tick")
			}
			for i, signal := range tc.signals {
				comp.Execute([]float64{signal}, nil)
				name, firing := alert.Firing()
				if name != tc.wantName || firing != tc.firing[i] {
					t.Errorf("tick %d: signal %v: Firing() = %q, %v; want %q, %v", i+1, signal, name, firing, tc.wantName, tc.firing[i])
				}
			}
		})
	}
}
