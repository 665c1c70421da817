package access

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Bearer is a bearer token that requests must carry in
// "Authorization: Bearer <token>". It holds only the token's SHA-256
// digest. It is safe for concurrent use.
type Bearer struct {
	digest [sha256.Size]byte
}

// NewBearer returns the check for token; nil (no token required) when
// token is "".
func NewBearer(token string) *Bearer {
	if token == "" {
		return nil
	}
	return &Bearer{digest: sha256.Sum256([]byte(token))}
}

// Allows reports whether r carries the token; a nil Bearer allows every
// request. It compares SHA-256 digests in constant time, so neither the
// token's bytes nor its length leak through timing.
func (b *Bearer) Allows(r *http.Request) bool {
	return b.AllowsAuthorization(r.Header.Get("Authorization"))
}

// AllowsAuthorization is Allows for the value of an Authorization header
// (or a gRPC "authorization" metadata entry): "Bearer <token>".
func (b *Bearer) AllowsAuthorization(authorization string) bool {
	if b == nil {
		return true
	}
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], b.digest[:]) == 1
}

// ReadTokenFile reads a bearer token from path, trimming surrounding
// whitespace such as a trailing newline. An empty token is an error.
func ReadTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return token, nil
}
