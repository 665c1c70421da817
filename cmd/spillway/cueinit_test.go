package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cueTool is the path of the cue command of the version in go.mod (the
// module's `tool` directive), built offline from the module cache.
func cueTool(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "tool", "-n", "cue").Output()
	if err != nil {
		t.Fatalf("go tool -n cue: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// cueVet runs `cue vet -c ./...` in dir with no registry, so that it passes
// only if everything it needs is on disk.
func cueVet(t *testing.T, cue, dir string) (string, error) {
	t.Helper()
	cmd := exec.Command(cue, "vet", "-c", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CUE_REGISTRY=none", "CUE_CACHE_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func cueInitDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runCLI(t, "cue", "init", dir); err != nil {
		t.Fatalf("spillway cue init: %v\n%s", err, out)
	}
	return dir
}

func TestCueInitMakesTheCueToolValidateAPolicyDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the cue command")
	}
	cue := cueTool(t)

	t.Run("the shipped policies pass", func(t *testing.T) {
		shipped, err := filepath.Glob("../../policies/*.cue")
		if err != nil || len(shipped) == 0 {
			t.Fatalf("no shipped policies: %v", err)
		}
		files := map[string]string{}
		for _, p := range shipped {
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files[filepath.Base(p)] = string(src)
		}
		dir := cueInitDir(t, files)
		if out, err := cueVet(t, cue, dir); err != nil {
			t.Fatalf("cue vet -c ./...: %v\n%s", err, out)
		}
		// Init again keeps the user's module.cue and refreshes the copy.
		moduleFile := filepath.Join(dir, "cue.mod", "module.cue")
		mine := "module: \"example.com/mine\"\nlanguage: version: \"v0.17.0\"\n"
		if err := os.WriteFile(moduleFile, []byte(mine), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := runCLI(t, "cue", "init", dir); err != nil {
			t.Fatalf("second spillway cue init: %v\n%s", err, out)
		}
		if got, _ := os.ReadFile(moduleFile); string(got) != mine {
			t.Fatalf("cue init replaced the user's module.cue:\n%s", got)
		}
		if out, err := cueVet(t, cue, dir); err != nil {
			t.Fatalf("cue vet -c ./... after a second init: %v\n%s", err, out)
		}
	})

	const header = "package policies\n\nimport \"spillway.dev/blueprints/latencyaimd\"\n\npolicies: \"checkout\": latencyaimd.#Policy & {\n\tconfig: {\n\t\tpolicy_name: \"checkout\"\n"
	for _, tc := range []struct {
		name, config string
		want         []string // in the output, in order
	}{
		{"an unknown field fails at the field",
			"\t\tflux_meter: selector: control_point: \"ingress\"\n\t\tlatency_baseliner: ema: ema_windw: \"1500s\"\n",
			[]string{`config.latency_baseliner.ema.ema_windw: field not allowed`, `policy.cue:9:27`}},
		{"a wrong type fails at the value",
			"\t\tflux_meter: selector: control_point: \"ingress\"\n\t\tlatency_baseliner: latency_tolerance_multiplier: \"1.1\"\n",
			[]string{`config.latency_baseliner.latency_tolerance_multiplier: conflicting values "1.1" and >=1 (mismatched types string and number)`, `policy.cue:9:52`}},
		{"a missing field fails naming it",
			"\t\tflux_meter: selector: api: \"GET /checkout\"\n",
			[]string{`config.flux_meter.selector.control_point: incomplete value`, `spillway.dev/blueprints/schema.cue:`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := cueInitDir(t, map[string]string{"policy.cue": header + tc.config + "\t}\n}\n"})
			out, err := cueVet(t, cue, dir)
			if err == nil {
				t.Fatalf("cue vet -c passed a broken policy:\n%s", out)
			}
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("cue vet output lacks %q:\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			if !regexp.MustCompile(`\.cue:\d+:\d+`).MatchString(out) {
				t.Fatalf("cue vet output has no position:\n%s", out)
			}
		})
	}
}

func TestCueInitRefusesAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.cue")
	if err := os.WriteFile(file, []byte("package policies\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "cue", "init", file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("cue init on a file: err = %v\n%s", err, out)
	}
}
