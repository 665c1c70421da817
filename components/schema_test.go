package components_test

import (
	"regexp"
	"testing"

	"github.com/spillway-dev/spillway/blueprints"
	"github.com/spillway-dev/spillway/components"
)

// TestSchemaListsEveryComponentType checks that each registered component
// type has an entry in the schema's #Component and a definition of its own,
// so that CUE validates its parameters at the user's line.
func TestSchemaListsEveryComponentType(t *testing.T) {
	schema, err := blueprints.Module.ReadFile("schema.cue")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range components.Types() {
		entry := regexp.MustCompile(`(?m)^\t` + typ + `\?:\s+#\w+$`)
		if !entry.Match(schema) {
			t.Errorf("schema.cue: #Component has no %s?: entry", typ)
		}
	}
	for _, typ := range []string{"Gradient2Controller", "VegasController", "EnvoyGradientController"} {
		if !regexp.MustCompile(`(?m)^#` + typ + `: \{$`).Match(schema) {
			t.Errorf("schema.cue: no #%s definition", typ)
		}
	}
}
