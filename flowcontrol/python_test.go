package flowcontrol_test

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spillway-dev/spillway/flowcontrol"
	"github.com/spillway-dev/spillway/flowcontrol/spillwayv1"
)

// python returns Debian's Python when it has grpcio and grpc_tools; it
// skips locally and fails in CI (CI=true), where scripts/test installs
// them.
func python(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import grpc; from grpc_tools import protoc").Run(); err == nil {
		return py
	}
	const msg = "Python's grpcio and grpc_tools are not installed (apt-get install -y python3-grpcio python3-grpc-tools); scripts/test installs them"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestCheckFromPython runs the Python client (stubs generated from the
// .proto at run time) against the gRPC service: a caller in another
// language gets decisions, and its Dones close its flows.
func TestCheckFromPython(t *testing.T) {
	py := python(t)
	eng := newEngine(t)
	srv := newServer(t, eng, flowcontrol.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rpc := grpc.NewServer(flowcontrol.GRPCServerOptions()...)
	spillwayv1.RegisterFlowControlServer(rpc, srv)
	healthpb.RegisterHealthServer(rpc, health.NewServer())
	go rpc.Serve(ln)
	defer rpc.Stop()

	// GET /a: 2/s with a burst of 2, so 2 of 20 quick checks are accepted
	// (3 should the 20 take over half a second).
	out, err := exec.Command(py, "clients/python/check_latency.py", "--addr", ln.Addr().String(),
		"--control-point", "svc", "--api", "GET /a", "--n", "20", "--proto", "../proto").CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	var report struct {
		Decisions map[string]int `json:"decisions"`
		P50       float64        `json:"p50_us"`
		Anchor    struct {
			P50 float64 `json:"p50_us"`
		} `json:"anchor"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("python client output %q: %v", out, err)
	}
	accepted, rejected := report.Decisions["DECISION_ACCEPTED"], report.Decisions["DECISION_REJECTED"]
	if accepted < 2 || accepted > 3 || accepted+rejected != 20 || report.P50 <= 0 || report.Anchor.P50 <= 0 {
		t.Errorf("python client saw %+v, want 2 (or 3) of 20 accepted, the rest rejected, and the health anchor timed", report)
	}
	if srv.OpenFlows() != 0 {
		t.Errorf("%d flows open after the client's Dones", srv.OpenFlows())
	}
}
