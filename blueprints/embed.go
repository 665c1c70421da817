// Package blueprints embeds Spillway's CUE schema and blueprints. The engine
// serves them to the CUE loader as the module spillway.dev/blueprints, so a
// policy file anywhere can import "spillway.dev/blueprints/latencyaimd"
// without a cue.mod of its own.
package blueprints

import "embed"

// Module is the CUE module spillway.dev/blueprints: cue.mod/module.cue,
// schema.cue and one directory per blueprint.
//
//go:embed cue.mod/module.cue *.cue envoygradient gradient2 latencyaimd latencytarget slo topfull vegas
var Module embed.FS

// ModulePath is the import path prefix of the embedded module.
const ModulePath = "spillway.dev/blueprints"

// Names lists the blueprints, the packages under ModulePath, sorted.
func Names() []string {
	entries, _ := Module.ReadDir(".")
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != "cue.mod" {
			names = append(names, e.Name())
		}
	}
	return names
}
