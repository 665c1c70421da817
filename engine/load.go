package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing/fstest"
	"time"
	"unicode"
	"unicode/utf8"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/load"
	"cuelang.org/go/cue/token"

	"github.com/spillway-dev/spillway/blueprints"
)

// MaxPolicyFileSize caps a policy source file; bigger files are load errors.
const MaxPolicyFileSize = 1 << 20

// userDir is where the policy file sits inside the loader's virtual module.
const userDir = "/policy-src"

// IsPolicyFile reports whether a directory entry name is a policy source:
// a .cue file that is not hidden (editors' swap and lock files are).
func IsPolicyFile(name string) bool {
	return strings.HasSuffix(name, ".cue") && !strings.HasPrefix(name, ".") && !strings.HasPrefix(name, "#")
}

// LoadDir loads every policy file directly inside dir (not recursively), in
// name order. All problems of all files are returned, each with a position;
// specs are returned only when there is no error.
func LoadDir(dir string) ([]Spec, Diagnostics) {
	files, err := policyFiles(dir)
	if err != nil {
		return nil, Diagnostics{{Pos: Position{File: dir}, Message: err.Error()}}
	}
	return LoadFiles(files)
}

// policyFiles lists the policy files directly inside dir, in name order.
// Symbolic links are followed, as in a Kubernetes ConfigMap mount.
// Directories are skipped, even one named x.cue or a link to one: loading
// is not recursive. Anything else named *.cue is listed, so that a named
// pipe or a dangling link becomes that file's load error.
func policyFiles(dir string) ([]string, error) {
	entries, err := readDirSorted(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		file := filepath.Join(dir, e.Name())
		if IsPolicyFile(e.Name()) && !isDirectory(e, file) {
			files = append(files, file)
		}
	}
	return files, nil
}

// LoadPaths loads the given files and directories. A path that is not a
// directory is read as a policy file whatever its name, so a named pipe,
// a dangling link or a missing file is that path's load error.
//
// Unlike LoadFiles, it returns every policy that loaded even when other
// files (or other policies of the same file) have errors, so that a
// checker can compile them and report their errors too. A caller that runs
// policies must refuse the whole set when there is an error.
func LoadPaths(paths []string) ([]Spec, Diagnostics) {
	var files []string
	var diags Diagnostics
	for _, p := range paths {
		if info, err := os.Stat(p); err != nil || !info.IsDir() {
			files = append(files, p)
			continue
		}
		inDir, err := policyFiles(p)
		if err != nil {
			diags = append(diags, Diagnostic{Pos: Position{File: p}, Message: err.Error()})
			continue
		}
		files = append(files, inDir...)
	}
	srcs, more := readFiles(files)
	diags = append(diags, more...)
	specs, more, _ := loadSources(context.Background(), files, srcs, nil)
	diags = append(diags, more...)
	return specs, diags.sorted()
}

// LoadFiles loads the given policy files. Policy names must be unique across
// all of them.
func LoadFiles(files []string) ([]Spec, Diagnostics) {
	srcs, diags := readFiles(files)
	specs, more, _ := loadSources(context.Background(), files, srcs, nil)
	diags = append(diags, more...)
	if len(diags.Errors()) > 0 {
		return nil, diags.sorted()
	}
	return specs, diags.sorted()
}

// readFiles reads each file, capped; a file that cannot be read gets a nil
// source and a diagnostic. It never blocks (see openPolicyFile).
func readFiles(files []string) ([][]byte, Diagnostics) {
	var diags Diagnostics
	srcs := make([][]byte, len(files))
	for i, f := range files {
		src, err := readCapped(f)
		if err != nil {
			diags = append(diags, unreadable(f, err))
			continue
		}
		srcs[i] = src
	}
	return srcs, diags
}

// loadSources evaluates already-read files (nil sources are skipped) and
// checks that policy names are unique across them. Each file is evaluated
// on its own, so the specs of the files that loaded are returned beside
// the errors of those that did not; a policy whose name is taken is not.
// The evaluations in reuse (nil for none) are not done again; kept is
// this load's clean evaluations, for the next (see evalCache).
func loadSources(ctx context.Context, files []string, srcs [][]byte, reuse evalCache) ([]Spec, Diagnostics, evalCache) {
	var specs []Spec
	srcs, diags := checkPolicyFiles(files, srcs)
	perFile, perDiags, kept := evaluateAll(ctx, files, srcs, Limits, reuse)
	seen := map[string]Position{}
	for i := range files {
		diags = append(diags, perDiags[i]...)
		for _, s := range perFile[i] {
			if first, dup := seen[s.Name]; dup {
				diags = append(diags, Diagnostic{Pos: s.Pos, Message: fmt.Sprintf("policy %q is already declared at %s", s.Name, first)})
				continue
			}
			seen[s.Name] = s.Pos
			specs = append(specs, s)
		}
	}
	return specs, diags, kept
}

// readCapped reads a regular file of at most MaxPolicyFileSize bytes.
// Errors are worded for a diagnostic at the file (see openPolicyFile).
func readCapped(file string) ([]byte, error) {
	f, err := openPolicyFile(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxPolicyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", bareError(err))
	}
	if len(src) > MaxPolicyFileSize {
		return nil, fmt.Errorf("policy file is larger than %d bytes", MaxPolicyFileSize)
	}
	return src, nil
}

// LoadSource evaluates one policy file's source. name is the path reported
// in positions. The file declares its policies under a top-level
// `policies` struct; each field is one #Policy. Evaluation is bounded by
// Limits (see EvalLimits).
func LoadSource(name string, src []byte) ([]Spec, Diagnostics) {
	return evaluate(context.Background(), name, src, Limits)
}

func loadSource(name string, src []byte) (specs []Spec, diags Diagnostics) {
	top := Position{File: name, Line: 1, Col: 1}
	defer func() {
		if r := recover(); r != nil {
			specs = nil
			diags = Diagnostics{{Pos: top, Message: fmt.Sprintf("internal error while evaluating the policy (please report): %v\n%s", r, debug.Stack())}}
		}
	}()
	if len(src) > MaxPolicyFileSize {
		return nil, Diagnostics{{Pos: top, Message: fmt.Sprintf("policy file is larger than %d bytes", MaxPolicyFileSize)}}
	}
	if len(bytes.TrimSpace(src)) == 0 {
		return nil, Diagnostics{{Pos: top, Message: "policy file is empty"}}
	}
	fsys, err := moduleFS(path.Join(userDir[1:], "policy.cue"), src)
	if err != nil {
		return nil, Diagnostics{{Pos: top, Message: err.Error()}}
	}
	virtual := path.Join(userDir, "policy.cue")
	conv := positionMapper(name, virtual)
	cfg := &load.Config{
		FS:         fsys,
		Dir:        userDir,
		ModuleRoot: "/",
		FromFSPath: func(p string) string { return conv(p) },
		Env:        []string{},
	}
	insts := load.Instances([]string{virtual}, cfg)
	if len(insts) != 1 {
		return nil, Diagnostics{{Pos: top, Message: "policy file did not load as one CUE instance"}}
	}
	if err := insts[0].Err; err != nil {
		return nil, cueDiagnostics(err, name, top)
	}
	// A fresh context per load: CUE contexts grow with use.
	ctx := cuecontext.New()
	root := ctx.BuildInstance(insts[0])
	user := newUserSource(name, insts[0])
	schema, err := loadSchema(ctx, cfg)
	if err != nil {
		return nil, Diagnostics{{Pos: top, Message: "internal error: the embedded schema does not load (please report): " + err.Error()}}
	}
	user.words = schema.words
	if err := root.Err(); err != nil {
		return nil, user.diagnostics(err, top, root, nil)
	}
	policies := root.LookupPath(cue.ParsePath("policies"))
	if !policies.Exists() {
		return nil, Diagnostics{{Pos: top, Message: "no policies: declare them as `policies: <name>: <blueprint>.#Policy & {config: {...}}`"}}
	}
	iter, err := policies.Fields()
	if err != nil {
		return nil, user.diagnostics(err, positionOf(policies, top), root, nil)
	}
	for iter.Next() {
		key := iter.Selector().String() // quoted when it is not an identifier
		// Every policy is a #Policy, whether or not its author said so:
		// a hand-written one gets the schema's checks and defaults too.
		v := iter.Value().Unify(schema.policy)
		if err := v.Validate(cue.Concrete(true), cue.Final()); err != nil {
			diags = append(diags, user.diagnostics(err, positionOf(iter.Value(), top), v, []string{"policies", key})...)
			continue
		}
		at, ok := user.labels["policies."+key]
		if !ok {
			at = positionOf(iter.Value(), top)
		}
		spec, d := decodePolicy(key, v, name, at)
		diags = append(diags, user.remap(d)...)
		if len(d.Errors()) == 0 {
			user.remapSpec(&spec, key)
			specs = append(specs, spec)
		}
	}
	if len(specs) == 0 && len(diags) == 0 {
		diags = append(diags, Diagnostic{Pos: positionOf(policies, top), Message: "policies is empty"})
	}
	return specs, diags
}

// moduleFS is the embedded blueprint module with the user's file added.
func moduleFS(userFile string, src []byte) (fs.FS, error) {
	m := fstest.MapFS{}
	err := fs.WalkDir(blueprints.Module, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(blueprints.Module, p)
		if err != nil {
			return err
		}
		m[p] = &fstest.MapFile{Data: data, Mode: 0o444}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m[userFile] = &fstest.MapFile{Data: src, Mode: 0o444}
	return m, nil
}

// positionMapper turns virtual paths back into names a user recognises.
func positionMapper(userName, virtual string) func(string) string {
	return func(p string) string {
		if p == virtual || p == strings.TrimPrefix(virtual, "/") {
			return userName
		}
		return blueprints.ModulePath + "/" + strings.TrimPrefix(p, "/")
	}
}

func toPosition(p token.Pos) Position {
	if !p.IsValid() {
		return Position{}
	}
	return Position{File: p.Filename(), Line: p.Line(), Col: p.Column()}
}

func positionOf(v cue.Value, fallback Position) Position {
	return bestPosition(fallback, v)
}

// cueDiagnostics converts CUE errors into diagnostics, one per error, for
// a file whose fields are not known (see userSource.diagnostics).
func cueDiagnostics(err error, userName string, fallback Position) Diagnostics {
	return (&userSource{name: userName}).diagnostics(err, fallback, cue.Value{}, nil)
}

// importFailure turns "import failed: <pos>: cannot find package "x": ..."
// into a sentence that names the package, and lists the blueprints when
// the package was meant to be one.
func importFailure(text string) string {
	i := strings.Index(text, "cannot find package ")
	if i < 0 {
		return text
	}
	msg := text[i:]
	if j := strings.Index(msg, ": cannot find module"); j > 0 {
		msg = msg[:j]
	}
	if strings.Contains(msg, blueprints.ModulePath+"/") {
		msg += fmt.Sprintf(" (the blueprints are %s)", strings.Join(blueprints.Names(), ", "))
	} else {
		msg += " (a policy may import only the blueprints of " + blueprints.ModulePath + " and CUE's standard library)"
	}
	return msg
}

// cuePath joins a CUE error path, writing list indexes as [i] and
// quoting labels that are not identifiers, as in policies."mimd.cart".
func cuePath(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if _, err := strconv.Atoi(p); err == nil {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(cue.Str(p).String())
	}
	return b.String()
}

// bestPosition picks, among the positions of vs, one in the user's file,
// else one in a blueprint, else one in the schema: the most specific place
// a reader can act on.
func bestPosition(fallback Position, vs ...cue.Value) Position {
	best, bestScore := fallback, -1
	for _, v := range vs {
		p := toPosition(v.Pos())
		if p.File == "" {
			continue
		}
		score := 2
		if strings.HasPrefix(p.File, blueprints.ModulePath+"/") {
			score = 1
			if strings.HasSuffix(p.File, "/schema.cue") {
				score = 0
			}
		}
		if score > bestScore {
			best, bestScore = p, score
		}
	}
	return best
}

// after orders positions within one file; the deepest user position is
// the one closest to the offending value (the others are where it was
// unified into a blueprint).
func after(a, b Position) bool {
	return a.Line > b.Line || (a.Line == b.Line && a.Col > b.Col)
}

// collapseDisjunctions keeps one error per CUE path. When a value fails
// every branch of a disjunction such as `(*1.0 | number) & >0`, CUE reports
// each branch; the conflict with the default is noise, so a more specific
// error wins and otherwise the last branch (the broadest type) does.
func collapseDisjunctions(diags Diagnostics) Diagnostics {
	pathOf := func(d Diagnostic) string {
		if i := strings.Index(d.Message, ": "); i > 0 {
			return d.Message[:i]
		}
		return d.Message
	}
	// An alternative that only names a literal (a blueprint's default,
	// `want "1500s"`) says less than one that names a type.
	conflict := func(d Diagnostic) bool {
		return strings.Contains(d.Message, ": conflicting values ") || strings.Contains(d.Message, `: want "`)
	}
	best := map[string]int{}
	var order []string
	for i, d := range diags {
		p := pathOf(d)
		j, seen := best[p]
		switch {
		case !seen:
			best[p] = i
			order = append(order, p)
		case conflict(diags[j]) || !conflict(d):
			best[p] = i
		}
	}
	out := make(Diagnostics, 0, len(order))
	for _, p := range order {
		out = append(out, diags[best[p]])
	}
	return out
}

// decodePolicy decodes one validated policy declared at pos.
func decodePolicy(key string, v cue.Value, file string, pos Position) (Spec, Diagnostics) {
	spec := Spec{File: file, Pos: pos}
	var diags Diagnostics
	fail := func(at cue.Value, format string, args ...any) {
		diags = append(diags, Diagnostic{Pos: positionOf(at, spec.Pos), Message: fmt.Sprintf(format, args...)})
	}
	var head struct {
		Name     string `json:"policy_name"`
		Interval string `json:"evaluation_interval"`
		DryRun   bool   `json:"dry_run"`
	}
	if err := v.Decode(&head); err != nil {
		return spec, cueDiagnostics(err, file, spec.Pos)
	}
	spec.Name = head.Name
	if err := checkName(head.Name); err != nil {
		fail(v.LookupPath(cue.ParsePath("policy_name")), "policies.%s.policy_name: %v", key, err)
		return spec, diags
	}
	interval := v.LookupPath(cue.ParsePath("evaluation_interval"))
	iv, err := time.ParseDuration(head.Interval)
	if err != nil || iv <= 0 {
		fail(interval, "policies.%s.evaluation_interval: %q is not a positive duration", key, head.Interval)
	}
	spec.EvaluationInterval = iv
	spec.IntervalPos = positionOf(interval, spec.Pos) // checked against Caps by Compile
	spec.DryRun = head.DryRun
	if raw, err := v.MarshalJSON(); err == nil {
		spec.Source = raw
	}
	compsValue := v.LookupPath(cue.ParsePath("components"))
	list, err := compsValue.List()
	if err != nil {
		return spec, append(diags, cueDiagnostics(err, file, spec.Pos)...)
	}
	if n, err := compsValue.Len().Int64(); err == nil && n > int64(Caps.withDefaults().ComponentsPerPolicy) {
		fail(compsValue, "policies.%s.components: %d components, over the cap of %d (engine.Caps.ComponentsPerPolicy)", key, n, Caps.withDefaults().ComponentsPerPolicy)
		return spec, diags
	}
	for i := 0; list.Next(); i++ {
		c, d := decodeComponent(fmt.Sprintf("policies.%s.components[%d]", key, i), list.Value(), file, spec.Pos)
		diags = append(diags, d...)
		spec.Components = append(spec.Components, c)
	}
	return spec, diags
}

func decodeComponent(where string, v cue.Value, file string, fallback Position) (ComponentSpec, Diagnostics) {
	c := ComponentSpec{Path: where, Pos: positionOf(v, fallback)}
	iter, err := v.Fields()
	if err != nil {
		return c, cueDiagnostics(err, file, c.Pos)
	}
	var types []string
	var body cue.Value
	for iter.Next() {
		types = append(types, iter.Selector().String())
		body = iter.Value()
	}
	if len(types) != 1 {
		return c, Diagnostics{{Pos: c.Pos, Message: fmt.Sprintf("%s: a component has exactly one key, its type; found %d (%s)", where, len(types), strings.Join(types, ", "))}}
	}
	c.Type = types[0]
	c.Path = where + "." + c.Type
	candidates := []cue.Value{v, body}
	if fi, err := body.Fields(); err == nil {
		for fi.Next() {
			candidates = append(candidates, fi.Value())
		}
	}
	c.Pos = bestPosition(c.Pos, candidates...)
	if d := checkNumbers(body, c.Path, file, c.Pos); len(d) > 0 {
		return c, d
	}
	var diags Diagnostics
	raw, err := body.MarshalJSON()
	if err != nil {
		return c, cueDiagnostics(err, file, c.Pos)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return c, Diagnostics{{Pos: c.Pos, Message: fmt.Sprintf("%s: must be a struct of parameters", c.Path)}}
	}
	delete(fields, "in_ports")
	delete(fields, "out_ports")
	c.Params, _ = json.Marshal(fields)
	for _, dir := range []string{"in_ports", "out_ports"} {
		ports := body.LookupPath(cue.ParsePath(dir))
		if !ports.Exists() {
			continue
		}
		pi, err := ports.Fields()
		if err != nil {
			diags = append(diags, cueDiagnostics(err, file, c.Pos)...)
			continue
		}
		for pi.Next() {
			port := pi.Selector().String()
			values := []cue.Value{pi.Value()}
			if l, err := pi.Value().List(); err == nil {
				values = values[:0]
				for l.Next() {
					values = append(values, l.Value())
				}
			}
			for _, pv := range values {
				pv, _ = pv.Default()
				b := PortBinding{Port: port, Pos: positionOf(pv, c.Pos)}
				switch pv.Kind() {
				case cue.StringKind:
					b.Signal, _ = pv.String()
				case cue.IntKind, cue.FloatKind, cue.NumberKind:
					if dir == "out_ports" {
						diags = append(diags, Diagnostic{Pos: b.Pos, Message: fmt.Sprintf("%s.%s.%s: an output must name a signal, not a constant", c.Path, dir, port)})
						continue
					}
					b.Const, _ = pv.Float64() // checkNumbers vetted it
					b.IsConst = true
				default:
					diags = append(diags, Diagnostic{Pos: b.Pos, Message: fmt.Sprintf("%s.%s.%s: must be a signal name or a number", c.Path, dir, port)})
					continue
				}
				if dir == "in_ports" {
					c.In = append(c.In, b)
				} else {
					c.Out = append(c.Out, b)
				}
			}
		}
	}
	return c, diags
}

// MaxNameLength bounds a policy name, which labels metrics and URLs.
const MaxNameLength = 128

// checkName accepts a policy name: non-empty, valid UTF-8, printable, at
// most MaxNameLength bytes.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case len(name) > MaxNameLength:
		return fmt.Errorf("is %d bytes long, over the limit of %d", len(name), MaxNameLength)
	case !utf8.ValidString(name):
		return errors.New("is not valid UTF-8")
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fmt.Errorf("%q has a character that is not printable", name)
	}
	return nil
}

// checkNumbers reports every number in v, at any depth, that a float64
// cannot hold: beyond ±1.8e308 (which would round to ±Inf, no limit or a
// block) or so small that it rounds to zero. It is the one range check
// every numeric field goes through, parameters and constant inputs alike;
// the documented range of a field is checked where the field is used
// (components' Provision, and the input ports' bounds at compile).
func checkNumbers(v cue.Value, where, file string, fallback Position) Diagnostics {
	switch v.Kind() {
	case cue.IntKind, cue.FloatKind, cue.NumberKind:
		if _, err := v.Float64(); err != nil {
			return Diagnostics{{Pos: positionOf(v, fallback), Message: fmt.Sprintf("%s: %v is outside the range of a 64-bit float (about ±1.8e308, and non-zero values above ±4.9e-324)", where, v)}}
		}
	case cue.StructKind:
		iter, err := v.Fields()
		if err != nil {
			return nil
		}
		var diags Diagnostics
		for iter.Next() {
			diags = append(diags, checkNumbers(iter.Value(), where+"."+iter.Selector().String(), file, fallback)...)
		}
		return diags
	case cue.ListKind:
		list, err := v.List()
		if err != nil {
			return nil
		}
		var diags Diagnostics
		for i := 0; list.Next(); i++ {
			diags = append(diags, checkNumbers(list.Value(), fmt.Sprintf("%s[%d]", where, i), file, fallback)...)
		}
		return diags
	}
	return nil
}

// sortedKeys returns m's keys in order; used for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
