// Package blueprints embeds Spillway's CUE schema and blueprints. The engine
// serves them to the CUE loader as the module spillway.dev/blueprints, so a
// policy file anywhere can import "spillway.dev/blueprints/latencyaimd"
// without a cue.mod of its own.
package blueprints

import "embed"

// Module is the CUE module spillway.dev/blueprints: cue.mod/module.cue,
// schema.cue and one directory per blueprint.
//
//go:embed cue.mod/module.cue *.cue latencyaimd latencytarget topfull
var Module embed.FS

// ModulePath is the import path prefix of the embedded module.
const ModulePath = "spillway.dev/blueprints"
