package components_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRLActuatorTellsTheAgentItsServices(t *testing.T) {
	a := newRLActuator(t, `{"selector":{"control_point":"ingress"},"services":["frontend","db"]}`)
	if got := a.Agent().Services; !slices.Equal(got, []string{"frontend", "db"}) {
		t.Errorf("Agent().Services = %v, want [frontend db]", got)
	}
	if got := newRLActuator(t, `{"selector":{"control_point":"ingress"}}`).Agent().Services; got != nil {
		t.Errorf("Agent().Services without services = %v, want nil (unknown)", got)
	}
}

func TestRLActuatorRefusesABadServicesList(t *testing.T) {
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf("%q", fmt.Sprintf("s%d", i))
	}
	for _, tc := range []struct{ services, want string }{
		{`["db",""]`, "services[1]: must not be empty"},
		{`["db","index","db"]`, `services[2]: "db" is listed twice`},
		{"[" + strings.Join(many, ",") + "]", "services: 65 names, over the maximum of 64"},
	} {
		_, err := provisionComponent("RLActuator", `{"selector":{"control_point":"ingress"},"services":`+tc.services+`}`, time.Second)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("services %.40s: error %v, want %q", tc.services, err, tc.want)
		}
	}
}
