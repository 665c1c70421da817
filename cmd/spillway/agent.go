package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/access"
	"github.com/spillway-dev/spillway/rlbridge"
	"github.com/spillway-dev/spillway/telemetry"
	"github.com/spillway-dev/spillway/testbed"
)

// agentFlags locate the RL bridge and the Python agent.
type agentFlags struct {
	addr, tokenFile string
	model, python   string
	agentDir        string
}

func (f *agentFlags) registerBridge(cmd *cobra.Command, defaultAddr string) {
	cmd.Flags().StringVar(&f.addr, "agent-addr", defaultAddr, "listen address of the RL bridge (TopFull protocol); beyond loopback it needs --agent-token-file")
	cmd.Flags().StringVar(&f.tokenFile, "agent-token-file", "", "file holding the bearer token the RL agent must send")
}

func (f *agentFlags) registerAgent(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.model, "agent-model", filepath.Join("rlbridge", "agent", "models", "topfull.json"), "the PPO policy the TopFull agent runs, for policies with an RLActuator")
	cmd.Flags().StringVar(&f.python, "python", defaultPython(), "the Python 3 (with numpy) that runs the agent")
	cmd.Flags().StringVar(&f.agentDir, "agent-dir", filepath.Join("rlbridge", "agent"), "directory of the spillway_agent package")
}

// defaultPython prefers the system Python, where Debian's numpy lives.
func defaultPython() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}

func (f *agentFlags) token() (string, error) {
	if f.tokenFile == "" {
		return "", nil
	}
	return access.ReadTokenFile(f.tokenFile)
}

// startBridge starts the RL bridge for b (and stepper, in the simulator),
// counting its requests in metrics when not nil, and returns its URL and
// the channel its end is reported on; it stops when ctx is done.
func (f *agentFlags) startBridge(ctx context.Context, b rlbridge.Backend, stepper rlbridge.Stepper, metrics *telemetry.Metrics) (string, <-chan error, error) {
	token, err := f.token()
	if err != nil {
		return "", nil, err
	}
	opts := rlbridge.Options{Token: token}
	if metrics != nil {
		opts.OnRequest = func(endpoint string, code int) { metrics.CountRLBridgeRequest(ctx, "/"+endpoint, code) }
	}
	h := rlbridge.Handler(b, stepper, opts)
	ready := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() { errc <- rlbridge.Serve(ctx, f.addr, h, token, func(a net.Addr) { ready <- a }) }()
	select {
	case a := <-ready:
		return "http://" + a.String(), errc, nil
	case err := <-errc:
		return "", nil, fmt.Errorf("RL bridge on %s: %w", f.addr, err)
	}
}

// hasAgent reports whether a policy has an RLActuator, so that it needs an
// agent to run.
func hasAgent(p testbed.Policy) bool {
	for _, s := range p.Templates {
		for _, c := range s.Components {
			if c.Type == "RLActuator" {
				return true
			}
		}
	}
	return false
}

// simulateWithAgent runs cfg with the Python agent, which it starts
// against a bridge on a free loopback port: in virtual time in lock step,
// or live on the wall clock, as a deployment runs it.
func (f *agentFlags) simulateWithAgent(ctx context.Context, cfg testbed.SimConfig, log io.Writer) (testbed.Report, error) {
	model, err := filepath.Abs(f.model)
	if err != nil {
		return testbed.Report{}, err
	}
	if _, err := os.Stat(model); err != nil {
		return testbed.Report{}, fmt.Errorf("agent model: %w", err)
	}
	if !cfg.Virtual {
		return f.liveWithAgent(ctx, cfg, model, log)
	}
	srv := testbed.NewSimServer(cfg.Seed, 0, func(uint64) (testbed.SimConfig, error) { return cfg, nil })
	defer srv.Close()
	seed := cfg.Seed
	if err := srv.Reset(ctx, &seed); err != nil {
		return testbed.Report{}, err
	}
	bridgeCtx, stop := context.WithCancel(ctx)
	defer stop()
	bf := *f
	bf.addr = "127.0.0.1:0"
	url, _, err := bf.startBridge(bridgeCtx, srv.Backend(), srv, nil)
	if err != nil {
		return testbed.Report{}, err
	}
	var output bytes.Buffer // read only once the agent has exited
	agentDone, err := f.startAgent(bridgeCtx, url, model, log, &output, append([]string{"--lockstep"}, cfg.Policy.AgentArgs...)...)
	if err != nil {
		return testbed.Report{}, err
	}
	type result struct {
		r   testbed.Report
		err error
	}
	runDone := make(chan result, 1)
	go func() { r, err := srv.Wait(ctx); runDone <- result{r, err} }()
	select {
	case err := <-agentDone:
		if err != nil {
			// Without its agent the run would measure the fallback, not TopFull.
			srv.Close()
			<-runDone
			return testbed.Report{}, fmt.Errorf("the agent failed before the run ended: %w\n%s", err, lastLines(output.String(), 20))
		}
		res := <-runDone
		return res.r, res.err
	case res := <-runDone:
		select {
		case <-agentDone:
		case <-time.After(5 * time.Second):
			stop()
			<-agentDone
		}
		return res.r, res.err
	}
}

// startAgent starts the agent's run command against the bridge at url; the
// returned channel reports its exit.
func (f *agentFlags) startAgent(ctx context.Context, url, model string, log, output io.Writer, extra ...string) (<-chan error, error) {
	args := append([]string{"-m", "spillway_agent", "run", "--server", url, "--model", model}, extra...)
	agent := exec.CommandContext(ctx, f.python, args...)
	agent.Env = append(os.Environ(), "PYTHONPATH="+f.agentDir)
	agent.Stdout = io.MultiWriter(log, output)
	agent.Stderr = agent.Stdout
	if err := agent.Start(); err != nil {
		return nil, fmt.Errorf("starting the agent (%s): %w", f.python, err)
	}
	done := make(chan error, 1)
	go func() { done <- agent.Wait() }()
	return done, nil
}

// liveWithAgent runs cfg live, with the agent on the wall clock against a
// bridge to the run's engine, started once the engine is. The agent's
// interval is the policy's.
func (f *agentFlags) liveWithAgent(ctx context.Context, cfg testbed.SimConfig, model string, log io.Writer) (testbed.Report, error) {
	bridgeCtx, stop := context.WithCancel(ctx)
	defer stop()
	var current atomic.Pointer[engine.Engine]
	bf := *f
	bf.addr = "127.0.0.1:0"
	url, _, err := bf.startBridge(bridgeCtx, rlbridge.EngineBackend{Engine: current.Load}, nil, nil)
	if err != nil {
		return testbed.Report{}, err
	}
	var output bytes.Buffer // read only once the agent has exited
	agentDone := make(chan error, 1)
	interval := agentInterval(cfg.Policy)
	cfg.OnEngine = func(eng *engine.Engine) {
		current.Store(eng)
		done, err := f.startAgent(bridgeCtx, url, model, log, &output, append([]string{"--interval", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64)}, cfg.Policy.AgentArgs...)...)
		if err != nil {
			agentDone <- err
			return
		}
		go func() { agentDone <- <-done }()
	}
	type result struct {
		r   testbed.Report
		err error
	}
	runDone := make(chan result, 1)
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go func() { r, err := testbed.Simulate(runCtx, cfg); runDone <- result{r, err} }()
	select {
	case err := <-agentDone:
		// Without its agent the run would measure the fallback, not TopFull.
		cancelRun()
		<-runDone
		if err == nil {
			err = errors.New("exited")
		}
		return testbed.Report{}, fmt.Errorf("the agent failed before the run ended: %w\n%s", err, lastLines(output.String(), 20))
	case res := <-runDone:
		stop()
		return res.r, res.err
	}
}

// agentInterval is the evaluation interval of the policy's first template
// with an RLActuator: the agent steps once per tick.
func agentInterval(p testbed.Policy) time.Duration {
	for _, s := range p.Templates {
		for _, c := range s.Components {
			if c.Type == "RLActuator" {
				return s.EvaluationInterval
			}
		}
	}
	return time.Second
}

// lastLines is the end of s: at most n lines.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
