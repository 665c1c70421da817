package main

import (
	"slices"
	"strings"
	"testing"
)

// TestRedisFlags: --redis takes one address, a cluster's nodes or the
// Sentinels, and refuses what cannot work with a reason.
func TestRedisFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   redisFlags
		addrs   []string
		master  string
		cluster bool
		err     string
	}{
		{name: "none", flags: redisFlags{}},
		{name: "one Redis", flags: redisFlags{addr: "10.0.0.5:6379"}, addrs: []string{"10.0.0.5:6379"}},
		{name: "a cluster's nodes", flags: redisFlags{addr: "10.0.0.5:6379, 10.0.0.6:6379,10.0.0.7:6379"},
			addrs: []string{"10.0.0.5:6379", "10.0.0.6:6379", "10.0.0.7:6379"}},
		{name: "one seed node of a cluster", flags: redisFlags{addr: "redis.example:6379", cluster: true},
			addrs: []string{"redis.example:6379"}, cluster: true},
		{name: "Sentinels", flags: redisFlags{addr: "10.0.0.5:26379,10.0.0.6:26379", masterName: "mymaster", db: 2},
			addrs: []string{"10.0.0.5:26379", "10.0.0.6:26379"}, master: "mymaster"},
		{name: "a master name without --redis", flags: redisFlags{masterName: "m"}, err: "need --redis"},
		{name: "no port", flags: redisFlags{addr: "10.0.0.5:6379,10.0.0.6"}, err: `"10.0.0.6" is not host:port`},
		{name: "an empty address", flags: redisFlags{addr: "10.0.0.5:6379,"}, err: `"" is not host:port`},
		{name: "Sentinel and cluster", flags: redisFlags{addr: "a:1", masterName: "m", cluster: true}, err: "a Sentinel master is not a cluster"},
		{name: "a database on a cluster", flags: redisFlags{addr: "a:1,b:2", db: 1}, err: "database 0 only"},
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
		})
	}
}
