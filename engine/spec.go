package engine

import (
	"encoding/json"
	"fmt"
	"time"
)

// Position is a place in a policy source file. Line and Col are 1-based.
type Position struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

func (p Position) String() string {
	if p.File == "" {
		return "-"
	}
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Spec is one loaded, schema-checked policy, ready to compile.
type Spec struct {
	Name string `json:"policy_name"`
	// File is the source file that declared the policy.
	File string `json:"file"`
	Pos  Position
	// EvaluationInterval is one tick of the policy's circuit.
	EvaluationInterval time.Duration
	// IntervalPos is where evaluation_interval is set; Pos when unknown.
	IntervalPos Position
	// DryRun computes decisions but never rejects.
	DryRun     bool
	Components []ComponentSpec
	// Source is the whole evaluated policy as JSON, for render and status.
	Source json.RawMessage
}

// ComponentSpec is one element of a policy's components list.
type ComponentSpec struct {
	Type string
	// Path locates the component in the policy, e.g. "components[2].EMA".
	Path string
	Pos  Position
	// Params is the component's configuration without its ports, as JSON.
	Params json.RawMessage
	In     []PortBinding
	Out    []PortBinding
}

// PortBinding wires one port to a signal or, for inputs only, a constant.
// A variadic input port has one binding per list element, in order.
type PortBinding struct {
	Port    string
	Signal  string
	Const   float64
	IsConst bool
	Pos     Position
}
