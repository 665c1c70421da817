package extauthz

import (
	"errors"
	"io"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// MetadataNamespace is where Envoy's ext_authz filter puts the dynamic
// metadata of an OK answer (its canonical name, whatever the filter
// instance is called); Envoy's gRPC access logger sends a request's
// dynamic metadata in common_properties.metadata.
const MetadataNamespace = "envoy.filters.http.ext_authz"

// AdmissionKey is the dynamic-metadata key of an admission's id. The
// client cannot set dynamic metadata, so it cannot finish someone else's
// admission.
const AdmissionKey = "spillway_admission"

// Completions counts what the access-log service did with admissions.
type Completions struct {
	// Held is how many admissions await their log entry now.
	Held int64
	// Completed admissions were finished by their log entry.
	Completed uint64
	// Unmatched log entries carried an admission id that is not held:
	// finished already (expired or evicted), from another Spillway
	// process, or never issued.
	Unmatched uint64
	// Expired admissions got no log entry within CompletionTimeout.
	Expired uint64
	// Evicted admissions were still held when MaxHeld later admissions
	// needed their slot.
	Evicted uint64
}

// Completions reports the access-log service's counters; all zero when
// Options.Completions is off.
func (s *Server) Completions() Completions {
	if s.held == nil {
		return Completions{}
	}
	return Completions{
		Held:      s.held.open.Load(),
		Completed: s.held.completed.Load(),
		Unmatched: s.held.unmatched.Load(),
		Expired:   s.held.expired.Load(),
		Evicted:   s.held.evicted.Load(),
	}
}

// AccessLogService is Envoy's access-log service
// (envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs) for
// this server's admissions: each HTTP log entry that carries an admission
// id finishes that admission, releasing its concurrency slots, with the
// entry's duration as its latency and its response code as its outcome.
// It is to be registered on the gRPC server that serves Check.
func (s *Server) AccessLogService() alsv3.AccessLogServiceServer {
	return accessLogService{s: s}
}

type accessLogService struct {
	alsv3.UnimplementedAccessLogServiceServer
	s *Server
}

// StreamAccessLogs reads Envoy's stream of log batches until Envoy closes
// it. TCP logs and entries without an admission id (requests ext_authz
// denied, or did not see) are ignored.
func (als accessLogService) StreamAccessLogs(stream alsv3.AccessLogService_StreamAccessLogsServer) error {
	s := als.s
	if s.held == nil {
		return status.Error(codes.FailedPrecondition, "this Spillway does not hold ext_authz admissions for Envoy's access log; start it with --envoy-access-log")
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		for _, entry := range msg.GetHttpLogs().GetLogEntry() {
			s.complete(entry)
		}
	}
}

// complete finishes the admission entry names, if any.
func (s *Server) complete(entry *accesslogv3.HTTPAccessLogEntry) {
	common := entry.GetCommonProperties()
	switch common.GetAccessLogType() {
	case accesslogv3.AccessLogType_NotSet, accesslogv3.AccessLogType_DownstreamEnd:
	default:
		return // periodic and upstream entries: the request goes on
	}
	//lint:ignore SA1019 an Envoy older than access_log_type marks periodic entries only so
	if common.GetIntermediateLogEntry() {
		return
	}
	id := common.GetMetadata().GetFilterMetadata()[MetadataNamespace].GetFields()[AdmissionKey].GetStringValue()
	if id == "" {
		return
	}
	ticket, startNs, ok := s.held.take(id)
	if !ok {
		s.held.unmatched.Add(1)
		return
	}
	latency, measured := envoyDuration(common)
	if !measured {
		latency = time.Duration(s.fc.Now() - startNs)
	}
	code := entry.GetResponse().GetResponseCode().GetValue()
	if flags := common.GetResponseFlags(); flags.GetDownstreamConnectionTermination() || flags.GetDownstreamRemoteReset() {
		// The client went away before the answer (DC, DR): abandoned, so
		// that the flux meters keep its latency apart from the answers'.
		ticket.AbandonAfter(latency)
	} else {
		ticket.DoneAfter(code > 0 && code < 500, latency)
	}
	s.held.completed.Add(1)
}

// envoyDuration is the request's latency as Envoy measured it: from its
// first byte to the last byte of the response sent downstream, or, when
// no response was sent, to the end of the stream.
func envoyDuration(common *accesslogv3.AccessLogCommon) (time.Duration, bool) {
	for _, d := range []*durationpb.Duration{common.GetTimeToLastDownstreamTxByte(), common.GetDuration()} {
		if d != nil && d.CheckValid() == nil {
			return max(d.AsDuration(), 0), true
		}
	}
	return 0, false
}

// admissionMetadata is the dynamic metadata of an OK answer: the
// admission's id.
func admissionMetadata(id string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{AdmissionKey: structpb.NewStringValue(id)}}
}
