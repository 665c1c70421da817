package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EvalLimits bounds the evaluation of one policy file. CUE evaluation cannot
// be interrupted from inside: a comprehension over fifty million elements
// runs until it is done or the process dies. So each file is evaluated in a
// child process (the running binary re-executed, or Evaluator; see the
// package init in this file), which is killed when it passes a bound. Its
// CPU and memory are released with it, and the error names the file.
type EvalLimits struct {
	// Timeout bounds the CPU time of one file's evaluation (and, at six
	// times as long, its wall time). Default 10 s.
	Timeout time.Duration
	// MemoryBytes bounds the memory of one file's evaluation: the child's Go
	// runtime memory, checked every few milliseconds, and, as a backstop,
	// its resident set seen from the parent. Default 512 MiB.
	MemoryBytes int64
	// InProcess evaluates in the calling process instead: no memory bound,
	// and an evaluation past Timeout is reported but keeps running in the
	// background. For platforms where the binary cannot re-execute itself;
	// the engine falls back to it, with a warning, when os.Executable fails.
	InProcess bool
	// Evaluator is the program run as the child: a path, or a name looked
	// up in PATH. Empty means the running binary (os.Executable). It must
	// link this package, whose init answers the request before its main
	// runs, and be built from the same Spillway version, since the request
	// and result are this version's JSON: the spillway CLI is one. It is
	// for a host that should not be re-executed, such as a test binary
	// built with -race, where every evaluation would run under the race
	// detector. A program that cannot be started, or exits without
	// answering, is that file's load error, naming the program.
	Evaluator string
}

// DefaultEvalLimits are the bounds used when Limits leaves a field zero.
var DefaultEvalLimits = EvalLimits{Timeout: 10 * time.Second, MemoryBytes: 512 << 20}

// Limits is the evaluation bound of every load in this process (LoadSource,
// LoadFiles, LoadDir, LoadPaths, Engine.Reload). Set it before loading.
var Limits = DefaultEvalLimits

func (l EvalLimits) withDefaults() EvalLimits {
	if l.Timeout <= 0 {
		l.Timeout = DefaultEvalLimits.Timeout
	}
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = DefaultEvalLimits.MemoryBytes
	}
	return l
}

// The child is this binary started with childEnv set: the package init
// below evaluates one file and exits before main runs.
const (
	childEnv       = "SPILLWAY_POLICY_EVAL_CHILD"
	childMemoryEnv = "SPILLWAY_POLICY_EVAL_MEMORY"
	// exitOverMemory is the child's exit status when its watchdog stopped it.
	exitOverMemory = 75
	// maxChildOutput caps what the parent reads back from a child.
	maxChildOutput = 64 << 20
)

func init() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	os.Exit(evalChild(os.Stdin, os.NewFile(3, "result"), os.Getenv(childMemoryEnv)))
}

type evalRequest struct {
	Name string     `json:"name"`
	Src  []byte     `json:"src"`
	Caps PolicyCaps `json:"caps"` // the parent's, for decoding
}

type evalResult struct {
	Specs []Spec      `json:"specs"`
	Diags Diagnostics `json:"diags"`
}

// evalChild is the child's side: read one request, evaluate it under a
// memory watchdog, write the result, return the exit status.
func evalChild(in io.Reader, out io.WriteCloser, memory string) int {
	limit, err := strconv.ParseInt(memory, 10, 64)
	if err != nil || limit <= 0 {
		limit = DefaultEvalLimits.MemoryBytes
	}
	// The host's request path wins any contention for the CPU.
	lowerPriority()
	// The collector works harder as the limit nears; the watchdog ends it.
	debug.SetMemoryLimit(limit)
	go watchMemory(limit)
	var req evalRequest
	if err := json.NewDecoder(io.LimitReader(in, 4*MaxPolicyFileSize)).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "spillway policy evaluator: reading the request:", err)
		return 2
	}
	Caps = req.Caps
	var res evalResult
	res.Specs, res.Diags = loadSource(req.Name, req.Src)
	if err := json.NewEncoder(out).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "spillway policy evaluator: writing the result:", err)
		return 2
	}
	if err := out.Close(); err != nil {
		return 2
	}
	return 0
}

// watchMemory exits the child as soon as the Go runtime holds more than
// limit bytes from the OS.
func watchMemory(limit int64) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	for {
		metrics.Read(samples)
		used := int64(samples[0].Value.Uint64()) - int64(samples[1].Value.Uint64())
		if used > limit {
			fmt.Fprintf(os.Stderr, "spillway policy evaluator: %d bytes in use, over the limit of %d\n", used, limit)
			os.Exit(exitOverMemory)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var warnInProcess sync.Once

// evaluations counts the policy files this process has evaluated (in a
// child or in-process), for the tests of evalCache.
var evaluations atomic.Uint64

// evaluate runs loadSource under the limits: in a child process, or in
// this one when the limits say so or no child can be started.
func evaluate(ctx context.Context, name string, src []byte, lim EvalLimits) ([]Spec, Diagnostics) {
	lim = lim.withDefaults()
	evaluations.Add(1)
	top := Position{File: name, Line: 1, Col: 1}
	if lim.InProcess {
		return evaluateInProcess(name, src, lim.Timeout)
	}
	exe := lim.Evaluator
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			warnInProcess.Do(func() {
				fmt.Fprintln(os.Stderr, "spillway: cannot re-execute this binary to evaluate policies in a bounded child process; evaluating in-process, without a memory bound:", err)
			})
			return evaluateInProcess(name, src, lim.Timeout)
		}
	}
	req, err := json.Marshal(evalRequest{Name: name, Src: src, Caps: Caps})
	if err != nil {
		return nil, Diagnostics{{Pos: top, Message: err.Error()}}
	}
	resultR, resultW, err := os.Pipe()
	if err != nil {
		return nil, Diagnostics{{Pos: top, Message: "starting the policy evaluator " + exe + ": " + err.Error()}}
	}
	defer resultR.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1", childMemoryEnv+"="+strconv.FormatInt(lim.MemoryBytes, 10),
		// A binary built with -race otherwise sleeps 1 s before exiting.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
		// One evaluation gets one core, so the host keeps the others.
		"GOMAXPROCS=1")
	cmd.Stdin = bytes.NewReader(req)
	var stderr tailBuffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{resultW}
	if err := cmd.Start(); err != nil {
		resultW.Close()
		return nil, Diagnostics{{Pos: top, Message: "starting the policy evaluator " + exe + ": " + err.Error()}}
	}
	resultW.Close() // the child holds its own copy

	output := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(resultR, maxChildOutput))
		output <- b
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Timeout bounds the child's CPU time, read from /proc: a child that
	// a loaded machine (it runs at nice 10) keeps waiting has not been
	// slow. Wall time is bounded too, at six times as long, for a child
	// that is blocked rather than busy and for systems without /proc.
	wall := time.NewTimer(6 * lim.Timeout)
	defer wall.Stop()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	// The parent's backstop: the child's resident set, which also counts
	// what the child's runtime does not (a race detector's shadow memory).
	rssLimit := 2*lim.MemoryBytes + 256<<20
	start := time.Now()
	var stopped string
	for stopped == "" {
		select {
		case err := <-exited:
			return childResult(name, exe, err, <-output, stderr.String(), lim)
		case <-wall.C:
			stopped = fmt.Sprintf("evaluation took longer than %s and was stopped; simplify the policy", 6*lim.Timeout)
		case <-ctx.Done():
			stopped = "evaluation was cancelled: the engine is shutting down"
		case <-poll.C:
			pid := cmd.Process.Pid
			if rss, ok := residentBytes(pid); ok && rss > rssLimit {
				stopped = fmt.Sprintf("evaluation used more than %d MiB of memory and was stopped; simplify the policy", lim.MemoryBytes>>20)
			}
			cpu, ok := cpuTime(pid)
			if !ok && runtime.GOOS != "linux" {
				cpu, ok = time.Since(start), true // no /proc: wall time stands in
			}
			if ok && cpu > lim.Timeout {
				stopped = fmt.Sprintf("evaluation took more than %s of CPU time and was stopped; simplify the policy", lim.Timeout)
			}
		}
	}
	_ = cmd.Process.Kill()
	<-exited
	return nil, Diagnostics{{Pos: top, Message: stopped}}
}

// childResult reads the answer of a finished child, which ran exe.
func childResult(name, exe string, waitErr error, out []byte, stderr string, lim EvalLimits) ([]Spec, Diagnostics) {
	top := Position{File: name, Line: 1, Col: 1}
	var exit *exec.ExitError
	if errors.As(waitErr, &exit) && exit.ExitCode() == exitOverMemory {
		return nil, Diagnostics{{Pos: top, Message: fmt.Sprintf("evaluation used more than %d MiB of memory and was stopped; simplify the policy", lim.MemoryBytes>>20)}}
	}
	if waitErr != nil {
		msg := "the policy evaluator " + exe + " failed (" + waitErr.Error() + ")"
		if s := strings.TrimSpace(stderr); s != "" {
			msg += ": " + s
		}
		return nil, Diagnostics{{Pos: top, Message: msg}}
	}
	if len(out) == 0 {
		// A program that does not link this package ignores the request.
		return nil, Diagnostics{{Pos: top, Message: "the policy evaluator " + exe + " exited without a result: it is not a Spillway binary (EvalLimits.Evaluator must be one that links package engine, such as the spillway CLI)"}}
	}
	var res evalResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, Diagnostics{{Pos: top, Message: "reading the result of the policy evaluator " + exe + ": " + err.Error()}}
	}
	return res.Specs, res.Diags
}

// evaluateInProcess is the unbounded fallback: a file that runs past
// timeout is reported and abandoned to finish in the background.
func evaluateInProcess(name string, src []byte, timeout time.Duration) ([]Spec, Diagnostics) {
	done := make(chan evalResult, 1)
	go func() {
		s, d := loadSource(name, src)
		done <- evalResult{s, d}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.Specs, r.Diags
	case <-timer.C:
		return nil, Diagnostics{{Pos: Position{File: name, Line: 1, Col: 1},
			Message: fmt.Sprintf("evaluation took longer than %s and was abandoned; simplify the policy", timeout)}}
	}
}

// residentBytes reads a process's resident set size on Linux.
func residentBytes(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// clockTicks is the unit of /proc/PID/stat's CPU times, USER_HZ, which is
// 100 on every Linux platform Go supports.
const clockTicks = 100

// cpuTime reads a process's user plus system CPU time on Linux.
func cpuTime(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name, field 2, may hold spaces; the rest follows its ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 { // utime and stime are fields 14 and 15 of the line
		return 0, false
	}
	user, err1 := strconv.ParseInt(f[11], 10, 64)
	sys, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(user+sys) * time.Second / clockTicks, true
}

// tailBuffer keeps the last 4 KiB written to it: a child's last words.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// evalCache holds the evaluations that a later load may reuse, JSON-encoded
// by evalKey. A file whose name, bytes and Caps are unchanged evaluates to
// the same specs and diagnostics (its only imports are the embedded
// blueprints), so a reload evaluates only the files that changed. Results
// with errors are not kept: a stop at a limit may have been the machine's
// load rather than the file.
type evalCache map[[sha256.Size]byte][]byte

func evalKey(name string, src []byte) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%+v\x00%d\x00", name, Caps, len(src))
	h.Write(src)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// evaluateAll evaluates files concurrently, at most one child per CPU, and
// returns their results in order. A nil source is skipped. A file whose
// evaluation is in reuse (which may be nil) is not evaluated again; kept
// holds the clean results of this call, for the next.
func evaluateAll(ctx context.Context, files []string, srcs [][]byte, lim EvalLimits, reuse evalCache) (specs [][]Spec, diags []Diagnostics, kept evalCache) {
	specs = make([][]Spec, len(files))
	diags = make([]Diagnostics, len(files))
	kept = evalCache{}
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range files {
		if srcs[i] == nil {
			continue
		}
		key := evalKey(files[i], srcs[i])
		if encoded, ok := reuse[key]; ok {
			var res evalResult
			if json.Unmarshal(encoded, &res) == nil {
				specs[i], diags[i] = res.Specs, res.Diags
				kept[key] = encoded
				continue
			}
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			specs[i], diags[i] = evaluate(ctx, files[i], srcs[i], lim)
		}()
	}
	wg.Wait()
	for i := range files {
		if srcs[i] == nil || len(diags[i].Errors()) > 0 {
			continue
		}
		if encoded, err := json.Marshal(evalResult{Specs: specs[i], Diags: diags[i]}); err == nil {
			kept[evalKey(files[i], srcs[i])] = encoded
		}
	}
	return specs, diags, kept
}
