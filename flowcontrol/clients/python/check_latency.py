#!/usr/bin/env python3
"""Measure the Check API's decision latency from Python (grpcio).

Generates the spillway.v1 stubs from proto/ into a temporary directory with
grpc_tools (Debian: python3-grpcio python3-grpc-tools), then calls
FlowControl/Check and /Done --n times, one at a time, and prints the Check
round trip's p50 and p99 in microseconds as JSON.

Each Check is followed by a call to the same server's gRPC health service
(grpc.health.v1.Health/Check), a call that does no work, on the same
channel; its p50 and p99 are printed beside the Check's as the anchor: what
grpcio and the machine cost a round trip whatever the server does. A server
without the health service gives no anchor.

    /usr/bin/python3 flowcontrol/clients/python/check_latency.py \
        --addr 127.0.0.1:8081 --control-point ingress --api 'GET /a' --n 20000
"""
import argparse
import importlib
import json
import os
import sys
import tempfile
import time


def load_stubs(proto_root):
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="spillway-stubs-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", "-I", proto_root, "-I", include, "-I", "/usr/include",
            "--python_out", out, "--grpc_python_out", out,
            os.path.join(proto_root, "spillway", "v1", "flowcontrol.proto")]
    if protoc.main(args) != 0:
        sys.exit("generating the stubs failed")
    sys.path.insert(0, out)
    pb = importlib.import_module("spillway.v1.flowcontrol_pb2")
    rpc = importlib.import_module("spillway.v1.flowcontrol_pb2_grpc")
    return pb, rpc


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:8081")
    parser.add_argument("--control-point", default="ingress")
    parser.add_argument("--api", default="GET /a")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--token", default="", help="bearer token, when the server has one")
    parser.add_argument("--proto", default=os.path.join(here, "..", "..", "..", "proto"))
    args = parser.parse_args()

    import grpc

    pb, rpc = load_stubs(os.path.abspath(args.proto))
    metadata = [("authorization", "Bearer " + args.token)] if args.token else None
    with grpc.insecure_channel(args.addr) as channel:
        stub = rpc.FlowControlStub(channel)
        req = pb.CheckRequest(control_point=args.control_point, api=args.api, labels={"client": "python"})
        # An empty HealthCheckRequest is zero bytes on the wire, and the
        # answer is not decoded: the anchor needs no generated stubs.
        health = channel.unary_unary("/grpc.health.v1.Health/Check",
                                     request_serializer=lambda m: m, response_deserializer=lambda m: m)
        anchors = []
        try:
            health(b"", metadata=metadata)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            health = None
        checks = []
        decisions = {}
        for _ in range(args.n):
            start = time.perf_counter_ns()
            resp = stub.Check(req, metadata=metadata)
            checks.append(time.perf_counter_ns() - start)
            name = pb.Decision.Name(resp.decision)
            decisions[name] = decisions.get(name, 0) + 1
            if resp.flow_id:
                stub.Done(pb.DoneRequest(flow_id=resp.flow_id, outcome=pb.OUTCOME_OK), metadata=metadata)
            if health is not None:
                start = time.perf_counter_ns()
                health(b"", metadata=metadata)
                anchors.append(time.perf_counter_ns() - start)
    report = {"client": "python grpcio " + grpc.__version__, "n": args.n, "decisions": decisions}
    report.update(percentiles(checks))
    if anchors:
        report["anchor"] = dict(call="grpc.health.v1.Health/Check", **percentiles(anchors))
    print(json.dumps(report))


def percentiles(durations_ns):
    durations_ns = sorted(durations_ns)
    return {
        "p50_us": round(durations_ns[len(durations_ns) // 2] / 1e3, 1),
        "p99_us": round(durations_ns[len(durations_ns) * 99 // 100] / 1e3, 1),
    }


if __name__ == "__main__":
    main()
