// Package flowcontrol is the Check API: Spillway's control points for
// services in any language, as the gRPC service spillway.v1.FlowControl
// (proto/spillway/v1/flowcontrol.proto) and its JSON-over-HTTP twin. A
// service calls Check before it handles a request and Done after, so the
// policies see its arrivals, rejections, latency and outcome exactly as they
// see the embedded middleware's.
package flowcontrol

//go:generate protoc -I ../proto --go_out=.. --go_opt=module=github.com/spillway-dev/spillway --go-grpc_out=.. --go-grpc_opt=module=github.com/spillway-dev/spillway ../proto/spillway/v1/flowcontrol.proto

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/decisionlog"
	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/flowcontrol/spillwayv1"
)

// Limits on what a caller may send.
const (
	// MaxNameLength bounds a control point name and a label key or value,
	// in bytes.
	MaxNameLength = 256
	// MaxLabels bounds the labels of one CheckRequest.
	MaxLabels = 16
	// MaxControlPoints bounds the control points that Check calls may
	// create beyond those the engine already has (the policies' own), so a
	// caller cannot grow memory by naming new ones.
	MaxControlPoints = 64
	// MaxRequestBytes bounds a request: a gRPC message or a JSON body.
	MaxRequestBytes = 16 << 10
)

// GRPCServerOptions are the options a gRPC server of the Check API is
// built with, besides its own message size and interceptors: a worker
// goroutine per CPU to run calls on, so a call reuses a goroutine whose
// stack has grown instead of starting one (grpc-go starts a goroutine per
// call otherwise, and does so still when every worker is busy).
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0)))}
}

// Options configure a Server. The zero value is ready to use.
type Options struct {
	// FlowTimeout is how long an accepted flow may stay open without Done;
	// after it the flow is finished as a server error, so a caller that
	// lost its Done cannot hold a concurrency slot forever. Default 60 s.
	FlowTimeout time.Duration
	// MaxOpenFlows bounds the accepted flows awaiting Done; Check beyond
	// it fails with RESOURCE_EXHAUSTED before deciding. Default 65536.
	MaxOpenFlows int
	// Decisions, when set, records every decision.
	Decisions *decisionlog.Log
}

// Server decides requests for callers of the Check API and for the Envoy
// ext_authz adapter. It is safe for concurrent use.
type Server struct {
	spillwayv1.UnimplementedFlowControlServer
	eng  *engine.Engine
	opts Options

	cpMu    sync.Mutex
	cps     atomic.Pointer[map[string]*controlpoint.ControlPoint]
	created int // control points this server created; under cpMu

	nextID  atomic.Uint64
	open    atomic.Int64
	expired atomic.Uint64
	shards  [16]flowShard

	stop chan struct{}
	done chan struct{}
}

type flowShard struct {
	mu    sync.Mutex
	flows map[uint64]flow
}

type flow struct {
	ticket  controlpoint.Ticket
	startNs int64 // engine clock
}

// New returns a server deciding with eng's control points. Close stops
// it and finishes its open flows.
func New(eng *engine.Engine, opts Options) *Server {
	if opts.FlowTimeout <= 0 {
		opts.FlowTimeout = 60 * time.Second
	}
	if opts.MaxOpenFlows <= 0 {
		opts.MaxOpenFlows = 65536
	}
	s := &Server{eng: eng, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	s.cps.Store(&map[string]*controlpoint.ControlPoint{})
	for i := range s.shards {
		s.shards[i].flows = map[uint64]flow{}
	}
	go s.sweep()
	return s
}

// Close stops the expiry sweeper and finishes every open flow as an error.
func (s *Server) Close() {
	close(s.stop)
	<-s.done
	s.expire(func(flow) bool { return true })
}

// Now is the engine's clock, in monotonic nanoseconds: what flows and
// latencies are timed with.
func (s *Server) Now() int64 { return s.eng.Now() }

// Expired is how many flows were finished by the flow timeout.
func (s *Server) Expired() uint64 { return s.expired.Load() }

// OpenFlows is how many accepted flows await Done.
func (s *Server) OpenFlows() int64 { return s.open.Load() }

// Verdict is a decision with what a caller needs to act on it.
type Verdict struct {
	Decision controlpoint.Decision
	// Ticket is the accepted request, to be finished exactly once.
	Ticket controlpoint.Ticket
	// RetryAfter and Explanation are set for a rejection (Explanation is
	// "" when no running policy has an actuator of the refusing kind, which
	// only a reload racing the decision causes).
	RetryAfter  time.Duration
	Explanation string
}

// Decide admits or rejects one request labelled api at controlPoint and
// records it (source names the caller in the decision log). A bad
// control point or label is an InvalidArgument status error.
func (s *Server) Decide(source, controlPoint, api string, labels map[string]string) (Verdict, error) {
	if err := checkRequest(controlPoint, labels); err != nil {
		return Verdict{}, err
	}
	cp, err := s.controlPoint(controlPoint)
	if err != nil {
		return Verdict{}, err
	}
	ticket, d := cp.Admit(api)
	v := Verdict{Decision: d, Ticket: ticket}
	entry := decisionlog.Decision{Source: source, ControlPoint: controlPoint, API: api, Outcome: decisionlog.Accepted, Labels: labels}
	if d != controlpoint.Accepted {
		v.RetryAfter = time.Second
		if x, ok := s.eng.ExplainRejection(controlPoint, api, d); ok {
			v.RetryAfter, v.Explanation = x.RetryAfter, x.Text
		}
		entry.Outcome = decisionlog.RateLimited
		if d == controlpoint.ConcurrencyLimited {
			entry.Outcome = decisionlog.ConcurrencyLimited
		}
		entry.Explanation, entry.RetryAfter = v.Explanation, v.RetryAfter.String()
	}
	if s.opts.Decisions != nil {
		entry.Time = time.Now()
		s.opts.Decisions.Add(entry)
	}
	return v, nil
}

// checkSize bounds a request to MaxRequestBytes even on a gRPC server
// that accepts larger messages for other services (Envoy's).
func checkSize(m proto.Message) error {
	if n := proto.Size(m); n > MaxRequestBytes {
		return status.Errorf(codes.ResourceExhausted, "request of %d bytes is larger than max %d", n, MaxRequestBytes)
	}
	return nil
}

func checkRequest(controlPoint string, labels map[string]string) error {
	if controlPoint == "" {
		return status.Error(codes.InvalidArgument, "control_point is required")
	}
	if len(controlPoint) > MaxNameLength || !utf8.ValidString(controlPoint) {
		return status.Errorf(codes.InvalidArgument, "control_point must be UTF-8 of at most %d bytes", MaxNameLength)
	}
	if len(labels) > MaxLabels {
		return status.Errorf(codes.InvalidArgument, "%d labels: at most %d", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if len(k) > MaxNameLength || len(v) > MaxNameLength {
			return status.Errorf(codes.InvalidArgument, "label %.32q: keys and values are at most %d bytes", k, MaxNameLength)
		}
	}
	return nil
}

// controlPoint returns the named control point: one the engine has, or a
// new one while this server has created fewer than MaxControlPoints.
func (s *Server) controlPoint(name string) (*controlpoint.ControlPoint, error) {
	if cp := (*s.cps.Load())[name]; cp != nil {
		return cp, nil
	}
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	old := *s.cps.Load()
	if cp := old[name]; cp != nil {
		return cp, nil
	}
	reg := s.eng.ControlPoints()
	exists := false
	for _, n := range reg.Names() {
		if n == name {
			exists = true
			break
		}
	}
	if !exists {
		if s.created >= MaxControlPoints {
			return nil, status.Errorf(codes.InvalidArgument, "control point %q is unknown to the policies, and %d such have been created already", name, MaxControlPoints)
		}
		s.created++
	}
	cp := reg.Get(name)
	next := make(map[string]*controlpoint.ControlPoint, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = cp
	s.cps.Store(&next)
	return cp, nil
}

// Check implements spillway.v1.FlowControl/Check.
func (s *Server) Check(ctx context.Context, req *spillwayv1.CheckRequest) (*spillwayv1.CheckResponse, error) {
	if err := checkSize(req); err != nil {
		return nil, err
	}
	if s.open.Load() >= int64(s.opts.MaxOpenFlows) {
		return nil, status.Errorf(codes.ResourceExhausted, "%d flows are open without Done; finish them with Done", s.opts.MaxOpenFlows)
	}
	v, err := s.Decide("check", req.GetControlPoint(), req.GetApi(), req.GetLabels())
	if err != nil {
		return nil, err
	}
	if v.Decision != controlpoint.Accepted {
		reason := spillwayv1.RejectReason_REJECT_REASON_RATE_LIMITED
		if v.Decision == controlpoint.ConcurrencyLimited {
			reason = spillwayv1.RejectReason_REJECT_REASON_CONCURRENCY_LIMITED
		}
		return &spillwayv1.CheckResponse{
			Decision:     spillwayv1.Decision_DECISION_REJECTED,
			RejectReason: reason,
			RetryAfter:   durationpb.New(v.RetryAfter),
			Explanation:  v.Explanation,
		}, nil
	}
	id := s.nextID.Add(1)
	sh := &s.shards[id%uint64(len(s.shards))]
	sh.mu.Lock()
	sh.flows[id] = flow{ticket: v.Ticket, startNs: s.eng.Now()}
	sh.mu.Unlock()
	s.open.Add(1)
	return &spillwayv1.CheckResponse{Decision: spillwayv1.Decision_DECISION_ACCEPTED, FlowId: strconv.FormatUint(id, 10)}, nil
}

// Done implements spillway.v1.FlowControl/Done.
func (s *Server) Done(ctx context.Context, req *spillwayv1.DoneRequest) (*spillwayv1.DoneResponse, error) {
	if err := checkSize(req); err != nil {
		return nil, err
	}
	var ok bool
	var abandoned bool
	switch req.GetOutcome() {
	case spillwayv1.Outcome_OUTCOME_OK:
		ok = true
	case spillwayv1.Outcome_OUTCOME_ERROR:
	case spillwayv1.Outcome_OUTCOME_ABANDONED:
		abandoned = true
	default:
		return nil, status.Errorf(codes.InvalidArgument, "outcome %v: want OUTCOME_OK, OUTCOME_ERROR or OUTCOME_ABANDONED", req.GetOutcome())
	}
	id, err := strconv.ParseUint(req.GetFlowId(), 10, 64)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "flow_id %.40q: not a flow id from Check", req.GetFlowId())
	}
	sh := &s.shards[id%uint64(len(s.shards))]
	sh.mu.Lock()
	f, found := sh.flows[id]
	delete(sh.flows, id)
	sh.mu.Unlock()
	if !found {
		return nil, status.Errorf(codes.NotFound, "flow %d is not open: finished already, expired after %s, or never accepted", id, s.opts.FlowTimeout)
	}
	s.open.Add(-1)
	latency := time.Duration(s.eng.Now() - f.startNs)
	if abandoned {
		f.ticket.Abandon()
	} else {
		f.ticket.Done(ok)
	}
	return &spillwayv1.DoneResponse{Latency: durationpb.New(latency)}, nil
}

// sweep finishes flows older than the flow timeout, a few times per timeout.
func (s *Server) sweep() {
	defer close(s.done)
	period := max(s.opts.FlowTimeout/4, 10*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			cutoff := s.eng.Now() - int64(s.opts.FlowTimeout)
			n := s.expire(func(f flow) bool { return f.startNs <= cutoff })
			s.expired.Add(uint64(n))
		}
	}
}

// expire finishes, as errors, the open flows that old selects.
func (s *Server) expire(old func(flow) bool) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		var gone []controlpoint.Ticket
		sh.mu.Lock()
		for id, f := range sh.flows {
			if old(f) {
				gone = append(gone, f.ticket)
				delete(sh.flows, id)
			}
		}
		sh.mu.Unlock()
		for _, t := range gone {
			t.Done(false)
		}
		s.open.Add(-int64(len(gone)))
		n += len(gone)
	}
	return n
}
