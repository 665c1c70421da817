package spillway_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// goList runs `go list args...` in the module root and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the go command is not on PATH: %v", err)
		}
		t.Skipf("SKIPPED: the go command is not on PATH (%v); this test needs it to list packages", err)
	}
	out, err := exec.Command(goBin, append([]string{"list"}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// A service that imports package spillway and speaks only HTTP must not
// link grpc: the interceptors are in spillwaygrpc, OTLP in telemetry/otlp.
func TestRootPackageDoesNotLinkGRPC(t *testing.T) {
	deps := goList(t, "-deps", ".")
	if len(deps) < 10 {
		t.Fatalf("go list -deps . listed only %q", deps)
	}
	isGRPC := func(path string) bool {
		return path == "google.golang.org/grpc" || strings.HasPrefix(path, "google.golang.org/grpc/")
	}
	if !slices.ContainsFunc(deps, isGRPC) {
		return
	}
	// Name the way in: the packages outside grpc that import it.
	var ways []string
	for _, line := range goList(t, "-deps", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}", ".") {
		pkg, imports, _ := strings.Cut(line, "\t")
		for _, imp := range strings.Fields(imports) {
			if isGRPC(imp) && !isGRPC(pkg) {
				ways = append(ways, pkg+" → "+imp)
			}
		}
	}
	t.Fatalf("package spillway links grpc: %s", strings.Join(ways, ", "))
}

// Every package says what it is for (go doc shows it).
func TestEveryPackageHasADocComment(t *testing.T) {
	for _, line := range goList(t, "-f", "{{.ImportPath}}\t{{.Doc}}", "./...") {
		path, doc, _ := strings.Cut(line, "\t")
		if strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no doc comment", path)
		}
	}
}
