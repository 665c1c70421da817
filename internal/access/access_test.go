package access

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8082", true},
		{"127.0.0.1:0", true},
		{"127.1.2.3:8082", true}, // all of 127.0.0.0/8 is loopback
		{"[::1]:0", true},
		{"[::ffff:127.0.0.1]:8082", true},
		{"localhost:8082", true},
		{"LocalHost:8082", true},
		{"localhost.:8082", true},
		{":8082", false},
		{"0.0.0.0:8082", false},
		{"[::]:8082", false},
		{"10.0.0.1:1", false},
		{"192.168.1.10:8082", false},
		{"[fe80::1%eth0]:8082", false},
		{"example.com:8082", false},
		{"localhost.example.com:8082", false},
		{"127.0.0.1", false}, // no port: not a listen address
		{"", false},
	}
	for _, tt := range tests {
		if got := IsLoopback(tt.addr); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name      string
		content   *string // nil: no file
		want      string
		wantError string
	}{
		{name: "a trailing newline is trimmed", content: ptr("s3cret\n"), want: "s3cret"},
		{name: "surrounding whitespace and CRLF are trimmed", content: ptr("  s3cret\r\n"), want: "s3cret"},
		{name: "an empty file is an error", content: ptr(""), wantError: "is empty"},
		{name: "a blank file is an error", content: ptr(" \n\n"), wantError: "is empty"},
		{name: "a missing file is an error", wantError: "no such file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "token"+string(rune('a'+i)))
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadTokenFile(path)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("ReadTokenFile = %q, %v; want an error mentioning %q", got, err, tt.wantError)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ReadTokenFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestIsLoopbackHost(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:9464", true},
		{"LOCALHOST.:9464", true},
		{"127.0.0.1", true},
		{"127.0.0.1:9464", true},
		{"127.9.8.7:1", true},
		{"[::1]", true},
		{"[::1]:9464", true},
		{"::1", true},
		{"evil.example", false},
		{"evil.example:9464", false},
		{"localhost.evil.example", false},
		{"127.0.0.1.evil.example", false},
		{"0.0.0.0:9464", false},
		{"10.0.0.1", false},
		{"[::]:9464", false},
		{"", false},
		{":9464", false},
	}
	for _, tt := range tests {
		if got := IsLoopbackHost(tt.host); got != tt.want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestListenRefusesBeyondLoopbackWithoutAToken(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		if ln, err := Listen(addr, "", "--x-token-file"); err == nil || !strings.Contains(err.Error(), "--x-token-file") {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("Listen(%q) without a token = %v, want a refusal naming the flag", addr, err)
		}
	}
	ln, err := Listen("127.0.0.1:0", "", "--x-token-file")
	if err != nil {
		t.Fatalf("Listen on loopback without a token: %v", err)
	}
	ln.Close()
	ln, err = Listen("0.0.0.0:0", "s3cret", "--x-token-file")
	if err != nil {
		t.Fatalf("Listen beyond loopback with a token: %v", err)
	}
	ln.Close()
}

func TestBearerAllows(t *testing.T) {
	tests := []struct {
		name, token, header string
		want                bool
	}{
		{name: "no token configured allows a bare request", want: true},
		{name: "the right token", token: "s3cret", header: "Bearer s3cret", want: true},
		{name: "the scheme is case-insensitive", token: "s3cret", header: "bearer s3cret", want: true},
		{name: "no header", token: "s3cret"},
		{name: "a wrong token", token: "s3cret", header: "Bearer s3cre"},
		{name: "a longer token", token: "s3cret", header: "Bearer s3cretX"},
		{name: "basic auth", token: "s3cret", header: "Basic s3cret"},
		{name: "the token without a scheme", token: "s3cret", header: "s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if got := NewBearer(tt.token).Allows(r); got != tt.want {
				t.Errorf("Allows = %v, want %v", got, tt.want)
			}
		})
	}
}
