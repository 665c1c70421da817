package engine

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/build"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/load"

	"github.com/spillway-dev/spillway/blueprints"
)

// userSource is what the loader knows of the user's file, to put each
// error at the field at fault and word it in the user's terms: CUE's own
// errors point into the schema or a blueprint when a field is missing or
// comes from a blueprint, and say `incomplete value !=""`.
type userSource struct {
	name string
	// labels maps a field path, as in messages ("policies.x.components[1]"),
	// to where the user wrote that field (its label, or a list element).
	labels map[string]Position
	// words maps a schema constraint as CUE prints it to what it means
	// (see schemaWords).
	words map[string]string
}

func newUserSource(name string, inst *build.Instance) *userSource {
	u := &userSource{name: name, labels: map[string]Position{}}
	for _, f := range inst.Files {
		if f.Filename == "" || toPosition(f.Pos()).File == name || len(inst.Files) == 1 {
			u.walk("", f)
		}
	}
	return u
}

// walk records the position of every field under n. Both sides of `&`
// and embedded structs are the same path, so `bp.#Policy & {config: ...}`
// records config under the policy.
func (u *userSource) walk(prefix string, n ast.Node) {
	switch x := n.(type) {
	case *ast.File:
		for _, d := range x.Decls {
			u.walk(prefix, d)
		}
	case *ast.StructLit:
		for _, d := range x.Elts {
			u.walk(prefix, d)
		}
	case *ast.EmbedDecl:
		u.walk(prefix, x.Expr)
	case *ast.ParenExpr:
		u.walk(prefix, x.X)
	case *ast.BinaryExpr:
		u.walk(prefix, x.X)
		u.walk(prefix, x.Y)
	case *ast.Field:
		name, _, err := ast.LabelName(x.Label)
		if err != nil {
			return
		}
		p := joinField(prefix, cue.Str(name).String())
		if _, seen := u.labels[p]; !seen {
			u.labels[p] = toPosition(x.Label.Pos())
		}
		u.walk(p, x.Value)
	case *ast.ListLit:
		for i, e := range x.Elts {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if _, seen := u.labels[p]; !seen {
				u.labels[p] = toPosition(e.Pos())
			}
			u.walk(p, e)
		}
	}
}

func joinField(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// nearest is where the user wrote fieldPath or, when the field is not in
// the file (it is missing, or a blueprint wrote it), its closest ancestor.
func (u *userSource) nearest(fieldPath string) (Position, bool) {
	pos, _, ok := u.nearestField(fieldPath)
	return pos, ok
}

// nearestField is nearest, and the path of the field it found.
func (u *userSource) nearestField(fieldPath string) (Position, string, bool) {
	for p := fieldPath; p != ""; p = parentPath(p) {
		if pos, ok := u.labels[p]; ok && pos.File != "" {
			return pos, p, true
		}
	}
	return Position{}, "", false
}

// parentPath drops the last element of a field path: a.b[1].c → a.b[1] → a.b.
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		return p[:strings.LastIndex(p, "[")]
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

// schema is the embedded #Policy and the words for its constraints.
type schema struct {
	policy cue.Value
	words  map[string]string
}

// loadSchema builds spillway.dev/blueprints in ctx, from the module that
// cfg serves.
func loadSchema(ctx *cue.Context, cfg *load.Config) (schema, error) {
	insts := load.Instances([]string{blueprints.ModulePath}, cfg)
	if len(insts) != 1 || insts[0].Err != nil {
		if len(insts) == 1 {
			return schema{}, insts[0].Err
		}
		return schema{}, fmt.Errorf("%d instances", len(insts))
	}
	v := ctx.BuildInstance(insts[0])
	if err := v.Err(); err != nil {
		return schema{}, err
	}
	return schema{policy: v.LookupPath(cue.MakePath(cue.Def("#Policy"))), words: schemaWords(v)}, nil
}

// schemaWords describes each of the schema's scalar definitions in the
// words of its doc comment ("#Duration is a Go duration string such as
// ..."), keyed by the way CUE prints the constraint in an error. The doc
// comment is the one home of that description.
func schemaWords(v cue.Value) map[string]string {
	words := map[string]string{}
	iter, err := v.Fields(cue.Definitions(true))
	if err != nil {
		return words
	}
	// A type error names one conjunct of a definition (#PositiveDuration's
	// "not zero" pattern), so each conjunct gets the definition's words,
	// unless it is a definition of its own (#Duration).
	conjuncts := map[string]string{}
	defer func() {
		for k, w := range conjuncts {
			if _, own := words[k]; !own {
				words[k] = w
			}
		}
	}()
	for iter.Next() {
		def := iter.Value()
		if k := def.IncompleteKind(); k&(cue.StructKind|cue.ListKind) != 0 {
			continue
		}
		label := iter.Selector().String()
		for _, doc := range def.Doc() {
			text := strings.Join(strings.Fields(doc.Text()), " ")
			if rest, ok := strings.CutPrefix(text, label+" is "); ok {
				if i := strings.Index(rest, ". "); i > 0 {
					rest = rest[:i]
				}
				words[fmt.Sprint(def)] = strings.TrimSuffix(rest, ".")
				if op, args := def.Expr(); op == cue.AndOp {
					for _, a := range args {
						conjuncts[fmt.Sprint(a)] = strings.TrimSuffix(rest, ".")
					}
				}
			}
		}
	}
	return words
}

// want says what a constraint, as CUE prints it, expects.
func (u *userSource) want(constraint string) string {
	if w, ok := u.words[constraint]; ok {
		return w
	}
	switch constraint {
	case `!=""`, `string & !=""`:
		return "a non-empty string"
	case "string":
		return "a string"
	case "number", "float":
		return "a number"
	case "int":
		return "an integer"
	case "bool":
		return "true or false"
	case "{}", "{...}":
		return "a struct"
	}
	if strings.HasPrefix(constraint, "<") || strings.HasPrefix(constraint, ">") {
		return "a number " + constraint
	}
	return constraint
}

// diagnostic is one converted CUE error, before deduplication.
type diagnostic struct {
	Diagnostic
	path string
	// atUser is true when CUE itself placed the error in the user's file.
	atUser bool
	// missing is the field a "required field is missing" error is about
	// (its last path element), and written the ancestor the user wrote.
	missing, written string
}

// diagnostics converts CUE errors into diagnostics, one per mistake, each
// at the user's field and in the user's words: the field path, then what
// is wrong or what was expected. base, when it exists, is the value at
// the path basePath that the errors are in (the file, or one policy
// unified with #Policy), to list the fields a struct takes.
func (u *userSource) diagnostics(err error, fallback Position, base cue.Value, basePath []string) Diagnostics {
	var found []diagnostic
	for _, e := range cueerrors.Errors(err) {
		format, args := e.Msg()
		if strings.Contains(format, "errors in empty disjunction") {
			continue // a summary of the errors that follow it
		}
		parts := unquoteAll(e.Path())
		d := diagnostic{path: cuePath(parts)}
		var fromBlueprint Position
		for _, p := range cueerrors.Positions(e) {
			tp := toPosition(p)
			switch {
			case tp.File == u.name && after(tp, d.Pos):
				d.Pos, d.atUser = tp, true
			case fromBlueprint.File == "" && isBlueprintFile(tp.File):
				fromBlueprint = tp
			}
		}
		if !d.atUser {
			if pos, written, ok := u.nearestField(d.path); ok {
				d.Pos, d.written = pos, written
			} else {
				d.Pos = fallback
			}
		}
		msg := fmt.Sprintf(format, args...)
		switch {
		case strings.TrimSpace(msg) == "":
			// A wrapped error keeps its text in the wrapped part only, e.g.
			// `cannot get syntax for "<file>": string literal not terminated`.
			msg = e.Error()
			if i := strings.Index(msg, "\": "); strings.HasPrefix(msg, "cannot get syntax for") && i > 0 {
				msg = msg[i+3:]
			}
			msg = strings.ReplaceAll(msg, path.Join(userDir, "policy.cue"), u.name)
		case format == "import failed":
			// The reason is only in the wrapped error's text.
			msg = importFailure(e.Error())
		case strings.HasPrefix(format, "incomplete value") && len(args) == 1:
			want := u.want(fmt.Sprint(args[0]))
			if _, written := u.labels[d.path]; written {
				msg = "is not a concrete value (want " + want + ")"
			} else {
				msg = "required field is missing (want " + want + ")"
				d.missing = parts[len(parts)-1]
			}
		case strings.HasPrefix(format, "conflicting values %s and %s (mismatched types") && len(args) == 4:
			got, want := args[0], args[1]
			if _, known := u.words[fmt.Sprint(got)]; known {
				got, want = want, got
			}
			msg = fmt.Sprintf("want %s, got %v", u.want(fmt.Sprint(want)), got)
		case strings.HasPrefix(format, "invalid value %v (out of bound") && len(args) == 2:
			msg = fmt.Sprintf("want %s, got %v", u.want(fmt.Sprint(args[1])), args[0])
		case strings.HasPrefix(format, "invalid value %v (does not satisfy") && len(args) == 2:
			msg = fmt.Sprintf("want a value that satisfies %v, got %v", args[1], args[0])
		case format == "field not allowed":
			msg = "unknown field"
			if fields := allowedFields(base, basePath, parts); len(fields) > 0 {
				msg += " (want one of " + strings.Join(fields, ", ") + ")"
			}
		}
		if !d.atUser && fromBlueprint.File != "" && !strings.HasPrefix(format, "incomplete value") {
			msg += fmt.Sprintf(" (from blueprint %s, %s)", blueprintOf(fromBlueprint.File), strings.TrimPrefix(fromBlueprint.String(), blueprints.ModulePath+"/"))
		}
		if d.path != "" {
			msg = d.path + ": " + msg
		}
		d.Message = msg
		found = append(found, d)
	}
	if len(found) == 0 {
		return Diagnostics{{Pos: fallback, Message: err.Error()}}
	}
	return collapseDisjunctions(onlyCauses(found)).sorted()
}

// onlyCauses drops the errors a blueprint derives from another: when a
// policy's config has an error, the same value flows into its components
// (or its policy_name) and fails there too, at a blueprint line. The
// config error is the cause, and the only one in the user's words.
func onlyCauses(found []diagnostic) Diagnostics {
	configs := map[string]bool{} // policy paths with an error in config
	for _, d := range found {
		if policy, ok := policyOf(d.path, ".config"); ok {
			configs[policy] = true
		}
	}
	// A blueprint default that copies a missing field (rate_controller's
	// selector defaults to flux_meter's) is missing too: of the errors
	// about one missing field, keep the one closest to what the user wrote
	// and, of those, the shortest path.
	best := map[string]diagnostic{}
	missingKey := func(d diagnostic) string {
		policy, _ := policyOf(d.path, "")
		return policy + "\x00" + d.missing + "\x00" + strings.TrimPrefix(d.Message, d.path)
	}
	better := func(a, b diagnostic) bool {
		if len(a.written) != len(b.written) {
			return len(a.written) > len(b.written)
		}
		return len(a.path) < len(b.path)
	}
	for _, d := range found {
		if b, seen := best[missingKey(d)]; d.missing != "" && (!seen || better(d, b)) {
			best[missingKey(d)] = d
		}
	}
	var out Diagnostics
	for _, d := range found {
		_, inConfig := policyOf(d.path, ".config")
		if policy, ok := policyOf(d.path, ""); ok && configs[policy] && !inConfig && !d.atUser {
			continue
		}
		if b := best[missingKey(d)]; d.missing != "" && (len(d.written) != len(b.written) || len(d.path) != len(b.path)) {
			continue
		}
		out = append(out, d.Diagnostic)
	}
	return out
}

// policyOf returns "policies.x" for a path under policies.x<field>, or
// under policies.x at all when field is "".
func policyOf(fieldPath, field string) (string, bool) {
	rest, ok := strings.CutPrefix(fieldPath, "policies.")
	if !ok {
		return "", false
	}
	key, _, _ := strings.Cut(rest, ".")
	key, _, _ = strings.Cut(key, "[")
	if field == "" {
		return "policies." + key, key != ""
	}
	after, ok := strings.CutPrefix(rest[len(key):], field)
	if !ok || (after != "" && after[0] != '.' && after[0] != '[') {
		return "", false
	}
	return "policies." + key, true
}

// allowedFields lists the fields that the struct holding the unknown field
// at errPath takes, for "unknown field". base is the value at basePath, a
// prefix of errPath.
func allowedFields(base cue.Value, basePath, errPath []string) []string {
	if !base.Exists() || len(errPath) <= len(basePath) {
		return nil
	}
	for i, p := range basePath {
		if errPath[i] != p {
			return nil
		}
	}
	var sels []cue.Selector
	for _, p := range errPath[len(basePath) : len(errPath)-1] {
		if i, err := strconv.Atoi(p); err == nil {
			sels = append(sels, cue.Index(i))
		} else {
			sels = append(sels, cue.Str(p))
		}
	}
	iter, err := base.LookupPath(cue.MakePath(sels...)).Fields(cue.Optional(true))
	if err != nil {
		return nil
	}
	var names []string
	for iter.Next() {
		name := unquote(strings.TrimSuffix(iter.Selector().String(), "?"))
		if name != errPath[len(errPath)-1] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// remap moves diagnostics that decoding placed outside the user's file
// (at a blueprint or schema line) to the user's nearest field, keeping
// the blueprint line as a note.
func (u *userSource) remap(diags Diagnostics) Diagnostics {
	for i, d := range diags {
		if d.Pos.File == u.name {
			continue
		}
		fieldPath, _, _ := strings.Cut(d.Message, ": ")
		if pos, ok := u.nearest(fieldPath); ok {
			if isBlueprintFile(d.Pos.File) {
				diags[i].Message += fmt.Sprintf(" (from blueprint %s, %s)", blueprintOf(d.Pos.File), strings.TrimPrefix(d.Pos.String(), blueprints.ModulePath+"/"))
			}
			diags[i].Pos = pos
		}
	}
	return diags
}

// remapSpec moves the positions of a spec that point outside the user's
// file to the user's nearest field, for the compiler's messages.
func (u *userSource) remapSpec(spec *Spec, key string) {
	at := func(pos *Position, fieldPath string) {
		if pos.File == u.name {
			return
		}
		if p, ok := u.nearest(fieldPath); ok {
			*pos = p
		}
	}
	at(&spec.Pos, "policies."+key)
	at(&spec.IntervalPos, "policies."+key+".evaluation_interval")
	for i := range spec.Components {
		c := &spec.Components[i]
		at(&c.Pos, c.Path)
		for j := range c.In {
			at(&c.In[j].Pos, c.Path+".in_ports."+c.In[j].Port)
		}
		for j := range c.Out {
			at(&c.Out[j].Pos, c.Path+".out_ports."+c.Out[j].Port)
		}
	}
}

// isBlueprintFile reports whether a position's file is one of the
// embedded blueprints (not the schema, which is every policy's).
func isBlueprintFile(file string) bool {
	rest, ok := strings.CutPrefix(file, blueprints.ModulePath+"/")
	return ok && strings.Contains(rest, "/")
}

// blueprintOf names the blueprint a file belongs to.
func blueprintOf(file string) string {
	rest := strings.TrimPrefix(file, blueprints.ModulePath+"/")
	name, _, _ := strings.Cut(rest, "/")
	return name
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
		return u
	}
	return s
}

func unquoteAll(parts []string) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = unquote(p)
	}
	return out
}
