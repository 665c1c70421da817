package httpmw

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/actuators"
)

// A request whose client left (its context canceled, as net/http does
// when the connection closes) is abandoned; one whose context met a
// server's own deadline is an answer the client got, an error but not
// abandoned.
func TestFinishTellsAClientThatLeftFromAServerDeadline(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ctx       func(context.Context) (context.Context, context.CancelFunc)
		abandoned uint64
	}{
		{"client left", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return ctx, cancel
		}, 1},
		{"server deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, time.Millisecond)
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := newCP()
			tap := actuators.NewRecorder(0)
			cp.API("*").AttachTap(tap)
			tap.Snapshot(0)
			h := Wrap(cp, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
				w.WriteHeader(http.StatusGatewayTimeout)
			}), Options{})
			r := httptest.NewRequest("GET", "/", nil)
			ctx, cancel := tc.ctx(r.Context())
			defer cancel()
			h.ServeHTTP(httptest.NewRecorder(), r.WithContext(ctx))
			w := tap.Snapshot(0)
			if w.Completed != 1 || w.Errors != 1 || w.Abandoned != tc.abandoned {
				t.Errorf("window %+v: want 1 completed, 1 error, %d abandoned", w, tc.abandoned)
			}
		})
	}
}
