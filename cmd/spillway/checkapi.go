package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spillway-dev/spillway/flowcontrol"
	"github.com/spillway-dev/spillway/flowcontrol/spillwayv1"
	"github.com/spillway-dev/spillway/internal/access"
	"github.com/spillway-dev/spillway/internal/extauthz"
	"github.com/spillway-dev/spillway/internal/proxy"
	"github.com/spillway-dev/spillway/internal/splitlisten"
)

// checkListener is the Check API's listener: gRPC (spillway.v1.FlowControl,
// Envoy's ext_authz and access-log service) and the JSON twin on one port.
type checkListener struct {
	Addr net.Addr
	fc   *flowcontrol.Server
	errc chan error
}

// serveCheck serves the Check API on addr until ctx is done, with the
// admin API's access: a loopback address, or acc.Token on every call.
// routes and controlPoint label ext_authz requests; with envoyAccessLog,
// ext_authz admissions are held until Envoy's access log finishes them.
func (h *hostedEngine) serveCheck(ctx context.Context, addr string, acc adminAccess, routes *proxy.RouteTable, controlPoint string, explain, envoyAccessLog bool) (*checkListener, error) {
	ln, err := access.Listen(addr, acc.Token, "--admin-token-file")
	if err != nil {
		return nil, fmt.Errorf("check API: %w", err)
	}
	fc := flowcontrol.New(h.eng, flowcontrol.Options{Decisions: h.decisions})
	bearer := access.NewBearer(acc.Token)
	rpc := grpc.NewServer(append(flowcontrol.GRPCServerOptions(),
		// Envoy's messages set the bound; the Check API bounds its own to
		// flowcontrol.MaxRequestBytes.
		grpc.MaxRecvMsgSize(extauthz.MaxMessageBytes),
		grpc.ChainUnaryInterceptor(access.UnaryBearer(bearer)),
		grpc.ChainStreamInterceptor(access.StreamBearer(bearer)),
	)...)
	spillwayv1.RegisterFlowControlServer(rpc, fc)
	authz := extauthz.New(fc, extauthz.Options{ControlPoint: controlPoint, Routes: routes, Explain: explain, Completions: envoyAccessLog})
	authv3.RegisterAuthorizationServer(rpc, authz)
	alsv3.RegisterAccessLogServiceServer(rpc, authz.AccessLogService())
	// gRPC's standard health service, for probes and load balancers (and, a
	// call that does nothing, the anchor of check_latency.py's figures).
	hs := health.NewServer()
	hs.SetServingStatus(spillwayv1.FlowControl_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(rpc, hs)
	web := &http.Server{
		Handler:           acc.guard(fc.Handler()),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	h2, h1 := splitlisten.Split(ln)
	c := &checkListener{Addr: ln.Addr(), fc: fc, errc: make(chan error, 2)}
	go func() { c.errc <- rpc.Serve(h2) }()
	go func() {
		err := web.Serve(h1)
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
			err = nil
		}
		c.errc <- err
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown()
		stopped := make(chan struct{})
		go func() { rpc.GracefulStop(); close(stopped) }()
		_ = web.Shutdown(shutdown)
		select {
		case <-stopped:
		case <-shutdown.Done():
			rpc.Stop()
		}
		ln.Close()
		authz.Close()
		fc.Close()
	}()
	return c, nil
}

// startCheck serves the Check API on --check, when it is set, for the
// control point controlPoint (API labels from routes, if not nil).
func startCheck(ctx context.Context, h *hostedEngine, ef engineFlags, routes *proxy.RouteTable, controlPoint string) error {
	if ef.check == "" {
		if ef.envoyAccessLog {
			return errors.New("--envoy-access-log: Envoy's access log goes to the Check API's port; set --check")
		}
		return nil
	}
	c, err := h.serveCheck(ctx, ef.check, ef.acc, routes, controlPoint, ef.explain, ef.envoyAccessLog)
	if err != nil {
		return err
	}
	slog.Info("Check API listening", "addr", c.Addr.String())
	return nil
}
