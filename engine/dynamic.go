package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"unicode"

	"github.com/spillway-dev/spillway/components"
)

// MaxDynamicConfigSize caps a dynamic-config request body.
const MaxDynamicConfigSize = 64 << 10

// DynamicConfig changes a running policy without reloading it. It is the
// policy's dynamic-config schema: every field is optional and a request
// changes only what it names. Overrides stay in force across reloads of the
// policy until they are cleared.
type DynamicConfig struct {
	// DryRun overrides the policy's dry_run: decisions are computed and
	// counted as would_reject, never enforced.
	DryRun *bool `json:"dry_run,omitempty"`
	// Variables sets Variable components, by the signal they output.
	Variables map[string]float64 `json:"variables,omitempty"`
}

// ErrNoPolicy is returned for a policy name that is not running.
var ErrNoPolicy = errors.New("no such policy")

// ConfigError is a dynamic-config request that does not fit the policy's
// schema; an admin server answers it with 400, or with 413 when TooLarge.
type ConfigError struct {
	Reason string
	// TooLarge is set for a body over MaxDynamicConfigSize.
	TooLarge bool
}

func (e *ConfigError) Error() string { return e.Reason }

// DecodeDynamicConfig strictly decodes a dynamic-config body: unknown
// fields, a key given twice in one object, trailing data and bodies over
// MaxDynamicConfigSize are errors.
func DecodeDynamicConfig(r io.Reader) (DynamicConfig, error) {
	var cfg DynamicConfig
	body, err := io.ReadAll(io.LimitReader(r, MaxDynamicConfigSize+1))
	if err != nil {
		return cfg, &ConfigError{Reason: "reading the body: " + err.Error()}
	}
	if len(body) > MaxDynamicConfigSize {
		return cfg, &ConfigError{Reason: fmt.Sprintf("body is larger than %d bytes", MaxDynamicConfigSize), TooLarge: true}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, &ConfigError{Reason: "invalid dynamic config: " + err.Error() + ` (want {"dry_run"?: bool, "variables"?: {SIGNAL: number}})`}
	}
	if dec.More() {
		return cfg, &ConfigError{Reason: "invalid dynamic config: trailing data after the JSON object"}
	}
	// encoding/json keeps the last of two equal keys; an override must not
	// depend on which of them a client or proxy honoured.
	if err := checkDuplicateKeys(body); err != nil {
		return DynamicConfig{}, &ConfigError{Reason: "invalid dynamic config: " + err.Error()}
	}
	return cfg, nil
}

// checkDuplicateKeys walks the JSON value in body and reports the first
// object key given twice in the same object, at any depth. In the
// outermost object, which decodes into DynamicConfig's fields, keys equal
// up to case are the same key, as encoding/json matches field names
// case-insensitively.
func checkDuplicateKeys(body []byte) error {
	// scope is an open object or array.
	type scope struct {
		path    string          // where it is: "" for the outermost value, "variables", "a[]"
		keys    map[string]bool // nil for an array
		wantKey bool            // in an object: the next token is a key or '}'
		key     string          // in an object: the key of the value being read
	}
	var stack []*scope
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *scope
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if tok == json.Delim('}') || tok == json.Delim(']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.wantKey {
			key := tok.(string) // the decoder yields only string keys
			seen := key
			if len(stack) == 1 {
				seen = foldKey(key)
			}
			if top.keys[seen] {
				if top.path == "" {
					return fmt.Errorf("key %q given twice", key)
				}
				return fmt.Errorf("key %q given twice in %s", key, top.path)
			}
			top.keys[seen] = true
			top.wantKey, top.key = false, key
			continue
		}
		// tok starts a value.
		path := ""
		switch {
		case top != nil && top.keys != nil:
			top.wantKey = true // after this value: a key or '}'
			path = strings.TrimPrefix(top.path+"."+top.key, ".")
		case top != nil:
			path = top.path + "[]"
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &scope{path: path, keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &scope{path: path})
		}
	}
}

// foldKey folds key as encoding/json does to match a struct field: each
// rune becomes the smallest rune of its case-folding orbit.
func foldKey(key string) string {
	var b strings.Builder
	for _, r := range key {
		for {
			next := unicode.SimpleFold(r)
			if next <= r {
				r = next
				break
			}
			r = next
		}
		b.WriteRune(r)
	}
	return b.String()
}

// SetDynamicConfig merges cfg into the policy's overrides and applies them
// from now on. A variable that the policy does not have is a *ConfigError,
// and nothing is changed.
func (e *Engine) SetDynamicConfig(policy string, cfg DynamicConfig) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.Policy(policy)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoPolicy, policy)
	}
	vars := r.Circuit.variables()
	for _, name := range sortedKeys(cfg.Variables) {
		v := cfg.Variables[name]
		if _, ok := vars[name]; !ok {
			return &ConfigError{Reason: fmt.Sprintf("policy %q has no Variable with output %q (it has: %s)", policy, name, strings.Join(sortedKeys(vars), ", "))}
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return &ConfigError{Reason: fmt.Sprintf("variable %q: value must be finite", name)}
		}
		if err := r.Circuit.checkVariable(name, v); err != nil {
			return &ConfigError{Reason: err.Error()}
		}
	}
	cur := e.dynamic[policy]
	if cur == nil {
		cur = &DynamicConfig{}
		e.dynamic[policy] = cur
	}
	if cfg.DryRun != nil {
		dry := *cfg.DryRun
		cur.DryRun = &dry
	}
	for name, v := range cfg.Variables {
		if cur.Variables == nil {
			cur.Variables = map[string]float64{}
		}
		cur.Variables[name] = v
	}
	r.mu.Lock()
	e.applyDynamic(r)
	r.mu.Unlock()
	e.log.Info("dynamic config changed", "policy", policy, "config", cur.String())
	return nil
}

// ClearDynamicConfig drops the policy's overrides: dry_run returns to the
// policy file's value and Variables to their declared values.
func (e *Engine) ClearDynamicConfig(policy string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.Policy(policy)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoPolicy, policy)
	}
	delete(e.dynamic, policy)
	r.mu.Lock()
	for _, v := range r.Circuit.variables() {
		v.Reset()
	}
	e.applyDynamic(r)
	r.mu.Unlock()
	e.log.Info("dynamic config cleared", "policy", policy)
	return nil
}

// DynamicConfigOf returns the policy's overrides (zero when none).
func (e *Engine) DynamicConfigOf(policy string) DynamicConfig {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dynamic[policy].clone()
}

// applyDynamic sets dry-run and Variables from the overrides; e.mu and r.mu
// (or exclusive ownership of r) are held. Overrides of variables that the
// policy no longer has are kept for a later reload that brings them back.
func (e *Engine) applyDynamic(r *Running) {
	cfg := e.dynamic[r.Circuit.Spec.Name]
	r.dryRun = r.Circuit.Spec.DryRun
	if cfg != nil && cfg.DryRun != nil {
		r.dryRun = *cfg.DryRun
	}
	for _, s := range r.sinks {
		s.limiter.DryRun.Store(r.dryRun)
	}
	if cfg == nil {
		return
	}
	vars := r.Circuit.variables()
	for name, v := range cfg.Variables {
		if c, ok := vars[name]; ok {
			c.Set(v)
		}
	}
}

// variables maps each Variable component's output signal to it.
func (c *Circuit) variables() map[string]*components.Variable {
	m := map[string]*components.Variable{}
	for _, n := range c.nodes {
		if v, ok := n.comp.(*components.Variable); ok && len(n.out) > 0 && n.out[0] >= 0 {
			m[c.names[n.out[0]]] = v
		}
	}
	return m
}

func (d *DynamicConfig) clone() DynamicConfig {
	if d == nil {
		return DynamicConfig{}
	}
	out := DynamicConfig{}
	if d.DryRun != nil {
		dry := *d.DryRun
		out.DryRun = &dry
	}
	if len(d.Variables) > 0 {
		out.Variables = make(map[string]float64, len(d.Variables))
		for k, v := range d.Variables {
			out.Variables[k] = v
		}
	}
	return out
}

func (d *DynamicConfig) String() string {
	var parts []string
	if d.DryRun != nil {
		parts = append(parts, fmt.Sprintf("dry_run=%t", *d.DryRun))
	}
	names := make([]string, 0, len(d.Variables))
	for k := range d.Variables {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s=%g", k, d.Variables[k]))
	}
	return strings.Join(parts, " ")
}
