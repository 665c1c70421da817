// Package redistest runs a real redis-server on a loopback port for tests.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server process that a test can stop and start again on
// the same port, without persistence: a restart loses every key.
type Server struct {
	Addr string
	t    testing.TB
	cmd  *exec.Cmd
	args []string // redis-server's arguments besides the port and the defaults
}

// Start runs redis-server on a free loopback port and stops it when the
// test ends. Without the binary the test is skipped with a loud message,
// unless the environment variable CI is set, in which case it fails:
// scripts/test installs redis-server.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

// StartReplica runs a redis-server that replicates master.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	return start(t, []string{"--replicaof", host, port})
}

func start(t testing.TB, args []string) *Server {
	t.Helper()
	needRedis(t)
	// Its own directory: a replica writes the master's snapshot there.
	args = append([]string{"--dir", t.TempDir()}, args...)
	s := &Server{Addr: freeAddr(t), t: t, args: args}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// needRedis skips the test, loudly, when redis-server is missing, unless
// CI is set, in which case it fails.
func needRedis(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			msg := bin + " is not installed: this test of global limits did NOT run (apt-get install redis-server, or run scripts/test)"
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			fmt.Fprintln(os.Stderr, "SKIP!", t.Name()+":", msg)
			t.Skip(msg)
		}
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Restart starts the server again (after Stop) on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning",
		"--repl-diskless-sync-delay", "0"}, s.args...) // a replica syncs at once
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ping(s.Addr) {
			// Another test's server may have taken the port while this
			// one was stopped; this one then failed to bind and exited.
			if pid, err := processID(s.Addr); err != nil || pid != s.cmd.Process.Pid {
				s.t.Fatalf("%s answers PING, but not from the redis-server started for it (pid %d, answered %d, %v): its port was taken while it was stopped", s.Addr, s.cmd.Process.Pid, pid, err)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not answer PING within 5 s", s.Addr)
}

// processID returns the process_id that the server at addr reports in
// INFO server.
func processID(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
}

// Stop kills the server (SIGKILL: no goodbye to its clients) and waits.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // a paused server dies all the same
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

func ping(addr string) bool {
	line, err := command(addr, "PING")
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// command sends one inline command and returns the first line of the
// answer.
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// Pause stops the server without closing its connections (SIGSTOP): Redis
// as slow as can be. Resume continues it.
func (s *Server) Pause() { s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.cmd.Process.Signal(syscall.SIGCONT) }

// Sentinel is a redis-server in Sentinel mode watching one master, under
// the name MasterName, with a quorum of 1: it alone can fail the master
// over, one second after the master stops answering.
type Sentinel struct {
	Addr       string
	MasterName string
	cmd        *exec.Cmd
}

// StartSentinel runs a Sentinel (redis-server --sentinel) that monitors
// master, and stops it when the test ends.
func StartSentinel(t testing.TB, master *Server) *Sentinel {
	t.Helper()
	needRedis(t)
	s := &Sentinel{Addr: freeAddr(t), MasterName: "spillway"}
	host, port, _ := net.SplitHostPort(s.Addr)
	mhost, mport, _ := net.SplitHostPort(master.Addr)
	// Sentinel rewrites its configuration file: it lives in the test's
	// directory.
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`port %s
bind %s
protected-mode no
loglevel warning
sentinel resolve-hostnames no
sentinel monitor %s %s %s 1
sentinel down-after-milliseconds %[3]s 1000
sentinel failover-timeout %[3]s 3000
`, port, host, s.MasterName, mhost, mport)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command("redis-server", conf, "--sentinel")
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if line, err := command(s.Addr, "SENTINEL get-master-addr-by-name "+s.MasterName); err == nil && strings.HasPrefix(line, "*2") {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("Sentinel on %s did not name its master within 5 s", s.Addr)
	return nil
}

// Cluster is a Redis Cluster of loopback redis-servers, every one a master
// with a third of the slots.
type Cluster struct {
	Addrs   []string
	Servers []*Server
}

// StartCluster runs three redis-servers in cluster mode and joins them
// (redis-cli --cluster create), and waits until the cluster is ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	needRedis(t)
	c := &Cluster{}
	for range 3 {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		// The cluster bus defaults to port + 10000, which a port above
		// 55535 cannot have: give it a free port of its own.
		_, bus, _ := net.SplitHostPort(freeAddr(t))
		s := start(t, []string{"--cluster-enabled", "yes", "--cluster-port", bus,
			"--cluster-config-file", "nodes-" + port + ".conf", "--cluster-node-timeout", "2000"})
		c.Addrs = append(c.Addrs, s.Addr)
		c.Servers = append(c.Servers, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range c.Addrs {
		for !clusterOK(addr) {
			if time.Now().After(deadline) {
				t.Fatalf("Redis Cluster node %s not ok within 10 s", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

// clusterOK reports whether the node at addr says cluster_state:ok.
func clusterOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("CLUSTER INFO\r\n")); err != nil {
		return false
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.HasPrefix(line, "cluster_state:") {
			return strings.HasPrefix(line, "cluster_state:ok")
		}
	}
}
