package engine

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestDecodeDynamicConfig(t *testing.T) {
	tests := []struct {
		name, body   string
		wantError    string // "" when the body is accepted
		wantTooLarge bool
	}{
		{name: "dry_run and variables are accepted", body: `{"dry_run": true, "variables": {"A": 1, "B": -2.5}}`},
		{name: "an empty object changes nothing", body: `{}`},
		{name: "the same key in two objects is not a duplicate", body: `{"variables": {"dry_run": 1}, "dry_run": false}`},
		{name: "dry_run given twice names the key", body: `{"dry_run":true,"dry_run":false}`, wantError: `key "dry_run" given twice`},
		{name: "keys equal up to case are one field", body: `{"dry_run":true,"DRY_RUN":false}`, wantError: `key "DRY_RUN" given twice`},
		{name: "a variable given twice names the key and where", body: `{"variables": {"A": 1, "B": 2, "A": 3}}`, wantError: `key "A" given twice in variables`},
		{name: "variable names are case-sensitive", body: `{"variables": {"A": 1, "a": 2}}`},
		{name: "variables given twice", body: `{"variables": {"A": 1}, "variables": {"B": 2}}`, wantError: `key "variables" given twice`},
		{name: "an escaped key equal to another", body: `{"variables": {"A": 1, "\u0041": 2}}`, wantError: `key "A" given twice in variables`},
		{name: "an unknown field", body: `{"dryrun": true}`, wantError: `unknown field "dryrun"`},
		{name: "a wrong type", body: `{"dry_run": "yes"}`, wantError: "invalid dynamic config"},
		{name: "a number out of float64 range", body: `{"variables": {"A": 1e400}}`, wantError: "invalid dynamic config"},
		{name: "trailing data", body: `{"variables": {"A": 1}} {}`, wantError: "trailing data"},
		{name: "not JSON", body: `[`, wantError: "invalid dynamic config"},
		{name: "a body over the cap is too large", body: `{"dry_run": true}` + strings.Repeat(" ", MaxDynamicConfigSize), wantError: "larger than", wantTooLarge: true},
		{name: "a body at the cap is read", body: `{"dry_run": true}` + strings.Repeat(" ", MaxDynamicConfigSize-len(`{"dry_run": true}`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeDynamicConfig(strings.NewReader(tt.body))
			if tt.wantError == "" {
				if err != nil {
					t.Fatalf("err %v, want the body accepted", err)
				}
				return
			}
			var cfgErr *ConfigError
			if !errors.As(err, &cfgErr) || !strings.Contains(err.Error(), tt.wantError) || cfgErr.TooLarge != tt.wantTooLarge {
				t.Fatalf("err %#v, want a ConfigError containing %q with TooLarge %v", err, tt.wantError, tt.wantTooLarge)
			}
		})
	}
}

// A huge body is refused after reading just over the cap, not all of it.
func TestDecodeDynamicConfigStopsReadingAHugeBody(t *testing.T) {
	body := &countingReader{r: io.LimitReader(spaces{}, 100<<20)}
	_, err := DecodeDynamicConfig(body)
	var cfgErr *ConfigError
	if !errors.As(err, &cfgErr) || !cfgErr.TooLarge {
		t.Fatalf("err %v, want a TooLarge ConfigError", err)
	}
	if body.n > 2*MaxDynamicConfigSize {
		t.Fatalf("read %d bytes of a 100 MB body, want about %d", body.n, MaxDynamicConfigSize)
	}
}

// spaces is an endless reader of spaces.
type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
