package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/spillway-dev/spillway/fleet"
)

// redisFlags connect the engine to Redis for global rate limits.
type redisFlags struct {
	addr, user, passwordFile, caFile string
	masterName                       string
	sentinelUser, sentinelPassFile   string
	db                               int
	tls, cluster                     bool
	sync                             time.Duration
}

func (f *redisFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "redis", "", `Redis shared by the engines that enforce global rate limits (scope: "global"): host:port; several, comma-separated, for Redis Cluster's nodes or, with --redis-master-name, the Sentinels; "" for none`)
	cmd.Flags().StringVar(&f.masterName, "redis-master-name", "", "the master's name in Sentinel: --redis lists the Sentinels, which give the current master")
	cmd.Flags().StringVar(&f.sentinelUser, "redis-sentinel-user", "", "ACL user name for the Sentinels, when they require one of their own (with --redis-master-name)")
	cmd.Flags().StringVar(&f.sentinelPassFile, "redis-sentinel-password-file", "", "file holding the Sentinels' own password (trailing newline ignored; with --redis-master-name)")
	cmd.Flags().BoolVar(&f.cluster, "redis-cluster", false, "--redis is Redis Cluster even with one address (a seed node); implied by several addresses without --redis-master-name")
	cmd.Flags().StringVar(&f.user, "redis-user", "", "Redis ACL user name")
	cmd.Flags().StringVar(&f.passwordFile, "redis-password-file", "", "file holding the Redis password (trailing newline ignored)")
	cmd.Flags().IntVar(&f.db, "redis-db", 0, "Redis database number")
	cmd.Flags().BoolVar(&f.tls, "redis-tls", false, "connect to Redis over TLS, verified against the system roots or --redis-ca-file")
	cmd.Flags().StringVar(&f.caFile, "redis-ca-file", "", "PEM file of the CA that signed Redis's certificate (implies --redis-tls)")
	cmd.Flags().DurationVar(&f.sync, "redis-sync", fleet.DefaultSyncInterval, "how often each engine reconciles its shares of the global limits with Redis")
}

// options returns the engine's Redis options, or nil without --redis.
func (f *redisFlags) options() (*fleet.Options, error) {
	if f.addr == "" {
		if f.user != "" || f.passwordFile != "" || f.tls || f.caFile != "" || f.masterName != "" || f.cluster || f.sentinelUser != "" || f.sentinelPassFile != "" {
			return nil, fmt.Errorf("--redis-user, --redis-password-file, --redis-tls, --redis-ca-file, --redis-master-name, --redis-sentinel-user, --redis-sentinel-password-file and --redis-cluster need --redis")
		}
		return nil, nil
	}
	if f.sync < 10*time.Millisecond {
		return nil, fmt.Errorf("--redis-sync %s: must be at least 10ms", f.sync)
	}
	var addrs []string
	for _, a := range strings.Split(f.addr, ",") {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("--redis %q: %q is not host:port", f.addr, a)
		}
		addrs = append(addrs, a)
	}
	switch {
	case f.masterName != "" && f.cluster:
		return nil, fmt.Errorf("--redis-master-name and --redis-cluster: a Sentinel master is not a cluster; give one or the other")
	case f.db != 0 && (f.cluster || f.masterName == "" && len(addrs) > 1):
		return nil, fmt.Errorf("--redis-db %d: Redis Cluster has database 0 only", f.db)
	case f.masterName == "" && (f.sentinelUser != "" || f.sentinelPassFile != ""):
		return nil, fmt.Errorf("--redis-sentinel-user and --redis-sentinel-password-file need --redis-master-name (Sentinels)")
	}
	o := &fleet.Options{Client: redis.UniversalOptions{
		Addrs: addrs, MasterName: f.masterName, IsClusterMode: f.cluster, Username: f.user, DB: f.db,
	}, SyncInterval: f.sync}
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-password-file: %w", err)
		}
		o.Client.Password = strings.TrimRight(string(b), "\r\n")
	}
	o.Client.SentinelUsername = f.sentinelUser
	if f.sentinelPassFile != "" {
		b, err := os.ReadFile(f.sentinelPassFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-sentinel-password-file: %w", err)
		}
		o.Client.SentinelPassword = strings.TrimRight(string(b), "\r\n")
	}
	if f.tls || f.caFile != "" {
		// Each connection verifies the name of the host it dials (a
		// cluster node, a Sentinel, the master a Sentinel names).
		o.Client.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if f.caFile != "" {
			pem, err := os.ReadFile(f.caFile)
			if err != nil {
				return nil, fmt.Errorf("--redis-ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--redis-ca-file %s: no PEM certificate", f.caFile)
			}
			o.Client.TLSConfig.RootCAs = pool
		}
	}
	// go-redis logs every failed dial; the engine reports Redis outages
	// itself (a warning, /status, metrics), so its lines go to debug.
	redis.SetLogger(redisLogger{})
	return o, nil
}

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, fmt.Sprintf(format, v...))
}
