package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/spillway-dev/spillway/engine"
	"github.com/spillway-dev/spillway/internal/redistest"
)

// TestRedisFlags: --redis takes one address, a cluster's nodes or the
// Sentinels, and refuses what cannot work with a reason.
func TestRedisFlags(t *testing.T) {
	sentinelPassFile := filepath.Join(t.TempDir(), "sentinel-password")
	if err := os.WriteFile(sentinelPassFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		flags   redisFlags
		addrs   []string
		master  string
		cluster bool
		// sentinelPassword is what --redis-sentinel-password-file holds.
		sentinelPassword string
		err              string
	}{
		{name: "none", flags: redisFlags{}},
		{name: "one Redis", flags: redisFlags{addr: "10.0.0.5:6379"}, addrs: []string{"10.0.0.5:6379"}},
		{name: "a cluster's nodes", flags: redisFlags{addr: "10.0.0.5:6379, 10.0.0.6:6379,10.0.0.7:6379"},
			addrs: []string{"10.0.0.5:6379", "10.0.0.6:6379", "10.0.0.7:6379"}},
		{name: "one seed node of a cluster", flags: redisFlags{addr: "redis.example:6379", cluster: true},
			addrs: []string{"redis.example:6379"}, cluster: true},
		{name: "Sentinels", flags: redisFlags{addr: "10.0.0.5:26379,10.0.0.6:26379", masterName: "mymaster", db: 2},
			addrs: []string{"10.0.0.5:26379", "10.0.0.6:26379"}, master: "mymaster"},
		{name: "Sentinels with credentials of their own", flags: redisFlags{addr: "10.0.0.5:26379", masterName: "mymaster", sentinelUser: "watcher", sentinelPassFile: sentinelPassFile},
			addrs: []string{"10.0.0.5:26379"}, master: "mymaster", sentinelPassword: "s3cret"},
		{name: "a master name without --redis", flags: redisFlags{masterName: "m"}, err: "need --redis"},
		{name: "no port", flags: redisFlags{addr: "10.0.0.5:6379,10.0.0.6"}, err: `"10.0.0.6" is not host:port`},
		{name: "an empty address", flags: redisFlags{addr: "10.0.0.5:6379,"}, err: `"" is not host:port`},
		{name: "Sentinel and cluster", flags: redisFlags{addr: "a:1", masterName: "m", cluster: true}, err: "a Sentinel master is not a cluster"},
		{name: "a database on a cluster", flags: redisFlags{addr: "a:1,b:2", db: 1}, err: "database 0 only"},
		{name: "Sentinel credentials without Sentinels", flags: redisFlags{addr: "a:1", sentinelUser: "s"}, err: "need --redis-master-name"},
		{name: "an unreadable Sentinel password file", flags: redisFlags{addr: "a:1", masterName: "m", sentinelPassFile: "/nonexistent/pw"}, err: "--redis-sentinel-password-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.flags.sync = 100e6
			o, err := tc.flags.options()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.addrs == nil {
				if o != nil {
					t.Fatalf("options %+v, want none", o)
				}
				return
			}
			c := o.Client
			if !slices.Equal(c.Addrs, tc.addrs) || c.MasterName != tc.master || c.IsClusterMode != tc.cluster {
				t.Errorf("addrs %q master %q cluster %v; want %q %q %v", c.Addrs, c.MasterName, c.IsClusterMode, tc.addrs, tc.master, tc.cluster)
			}
			if c.SentinelUsername != tc.flags.sentinelUser || c.SentinelPassword != tc.sentinelPassword {
				t.Errorf("Sentinel credentials %q/%q, want %q/%q", c.SentinelUsername, c.SentinelPassword, tc.flags.sentinelUser, tc.sentinelPassword)
			}
		})
	}
}

// TestRunReachesRedisClusterAndSentinel: `spillway run` with a global limit
// syncs with a real Redis Cluster given by its nodes, and with a real
// master given by a Sentinel and the master's name.
func TestRunReachesRedisClusterAndSentinel(t *testing.T) {
	cluster := redistest.StartCluster(t)
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master)
	policies := t.TempDir()
	if err := os.WriteFile(filepath.Join(policies, "pay.cue"), []byte(fleetPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		check func(*testing.T)
	}{
		{"cluster", []string{"--redis", strings.Join(cluster.Addrs, ",")}, func(t *testing.T) {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs})
			defer c.Close()
			if n, err := c.Exists(context.Background(), "spillway:{pay}:live").Result(); err != nil || n != 1 {
				t.Errorf("the cluster has no member key: exists %d, %v", n, err)
			}
		}},
		{"sentinel", []string{"--redis", sentinel.Addr, "--redis-master-name", sentinel.MasterName}, func(t *testing.T) {
			c := redis.NewClient(&redis.Options{Addr: master.Addr})
			defer c.Close()
			if n, err := c.Exists(context.Background(), "spillway:{pay}:live").Result(); err != nil || n != 1 {
				t.Errorf("the master has no member key: exists %d, %v", n, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin := freeAddr(t)
			defer startCommand(t, append([]string{"run", "--policies", policies, "--admin", admin, "--agent-addr", ""}, tc.flags...)...)()
			waitGlobal(t, admin, func(g *engine.GlobalStatus) bool { return g.Mode == "synced" && g.Live == 1 && g.Share == 300 })
			tc.check(t)
		})
	}
}
