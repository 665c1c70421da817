package components

func init() {
	Register(Info{Type: "Alerter", New: func() Component { return &Alerter{} }, Params: []Param{alerterName}})
}

// alerterName is Alerter's parameter (#Alerter).
var alerterName = Param{Name: "alert_name", Kind: String, Default: "Load Shed Event"}

// Alerter raises a named event on every tick its signal is valid and non-zero.
type Alerter struct {
	Name   string `json:"alert_name"`
	firing bool
}

// Ports: signal →.
func (*Alerter) Ports() Ports { return Ports{In: []Port{{Name: "signal", Required: true}}} }

// Provision applies the default name.
func (a *Alerter) Provision(Env) error {
	if a.Name == "" {
		a.Name = alerterName.Default.(string)
	}
	return nil
}

// Execute runs one tick.
func (a *Alerter) Execute(in, _ []float64) { a.firing = IsValid(in[0]) && in[0] != 0 }

// Firing reports whether the last tick raised the alert.
func (a *Alerter) Firing() (string, bool) { return a.Name, a.firing }
