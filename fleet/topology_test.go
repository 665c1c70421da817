package fleet_test

import (
	"context"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spillway-dev/spillway/actuators/controlpoint"
	"github.com/spillway-dev/spillway/fleet"
	"github.com/spillway-dev/spillway/internal/redistest"
)

// go-redis logs every failed dial and every master Sentinel names; the
// tests assert what matters, and their output stays readable.
func init() { redis.SetLogger(quietRedis{}) }

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// TestSyncersOnRedisCluster: three Syncers reach a real three-node Redis
// Cluster through its node list. Each takes part in two global limits
// whose keys live on different nodes; every sync answers, each member
// sees the three and takes a third of the limit, and the keys of a limit
// share one slot (the Lua script touches them together). The exact-mode
// GCRA works there too.
func TestSyncersOnRedisCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	ctx := context.Background()
	admin := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	defer admin.Close()

	// Two keys whose slots belong to different nodes.
	nodeOf := func(key string) string {
		slot, err := admin.ClusterKeySlot(ctx, "spillway:{"+key+"}:live").Result()
		if err != nil {
			t.Fatal(err)
		}
		shards, err := admin.ClusterShards(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if r.Start <= slot && slot <= r.End {
					for _, n := range sh.Nodes {
						if n.Role == "master" {
							return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
						}
					}
				}
			}
		}
		t.Fatalf("no node serves slot %d", slot)
		return ""
	}
	keys := []string{"payments"}
	for _, k := range []string{"refunds", "search", "checkout", "cart", "home", "login"} {
		if nodeOf(k) != nodeOf(keys[0]) {
			keys = append(keys, k)
			break
		}
	}
	if len(keys) != 2 {
		t.Fatal("no second key on another node")
	}

	const n = 3
	syncers := make([]*fleet.Syncer, n)
	members := make([][]*fleet.Member, n)
	for i := range syncers {
		s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: c.Addrs}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		syncers[i] = s
		for _, k := range keys {
			m := s.Join(k, "ingress/*", func(float64, float64) {}, func() uint64 { return 0 })
			m.SetLimit(900, 90)
			members[i] = append(members[i], m)
		}
	}
	// Two rounds in which every syncer syncs. A first sync also loads the
	// cluster's slots and dials the nodes, within one sync interval: on a
	// busy machine it may miss, and, as in Run, the next sync is the retry.
	for round := 0; round < 2; round++ {
		for i, s := range syncers {
			var err error
			for try := 0; try < 10; try++ {
				if err = s.SyncOnce(ctx); err == nil {
					break
				}
				t.Logf("syncer %d, round %d: %v; again", i, round, err)
			}
			if err != nil {
				t.Fatalf("syncer %d, round %d: ten syncs failed, the last with %v", i, round, err)
			}
		}
	}
	for i := range syncers {
		for _, m := range members[i] {
			st := m.Status(time.Now())
			if st.Mode != "synced" || st.Live != n || math.Abs(st.Share-300) > 1e-6 {
				t.Errorf("syncer %d, limit %s: mode %s, live %d, share %.1f; want synced, %d, 300", i, st.Key, st.Mode, st.Live, st.Share, n)
			}
		}
	}
	for _, k := range keys {
		var slots []int64
		for _, suffix := range []string{"live", "demand", "total"} {
			key := "spillway:{" + k + "}:" + suffix
			if n, err := admin.Exists(ctx, key).Result(); err != nil || n != 1 {
				t.Errorf("%s: exists %d, %v; want 1", key, n, err)
			}
			slot, _ := admin.ClusterKeySlot(ctx, key).Result()
			slots = append(slots, slot)
		}
		if slots[0] != slots[1] || slots[1] != slots[2] {
			t.Errorf("limit %s: its keys are in slots %v, want one", k, slots)
		}
		t.Logf("limit %s: slot %d on node %s", k, slots[0], nodeOf(k))
	}

	x := syncers[0].Exact("refunds-exact", time.Second)
	defer x.Close()
	x.SetLimit(1, 3) // 3 at once, then one a second
	var admitted int
	for range 5 {
		switch x.Decide(time.Now().UnixNano()) {
		case controlpoint.RemoteAdmit:
			admitted++
		case controlpoint.RemoteUnanswered:
			t.Fatalf("exact mode on Redis Cluster: unanswered: %+v", x.Status())
		}
	}
	if admitted != 3 {
		t.Errorf("exact mode on Redis Cluster: %d of 5 admitted at once with burst 3, want 3", admitted)
	}
}

// TestSyncerFollowsSentinelFailover: a Syncer given a Sentinel and the
// master's name finds the master through it, and keeps syncing after
// Sentinel fails the master over to its replica: while no master answers
// the share holds (fail_static); once the replica is promoted the syncs
// answer again, on the new master.
func TestSyncerFollowsSentinelFailover(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("real time: a Sentinel failover, about 3 to 8 s")
	}
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if info, _ := rc.Info(ctx, "replication").Result(); containsLine(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica did not link to the master within 5 s")
		}
	}
	sentinel := redistest.StartSentinel(t, master)

	s, err := fleet.New(fleet.Options{Client: redis.UniversalOptions{Addrs: []string{sentinel.Addr}, MasterName: sentinel.MasterName}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rate float64
	m := s.Join("payments", "ingress/*", func(r, _ float64) { rate = r }, func() uint64 { return 0 })
	m.SetLimit(1000, 100)
	if err := s.SyncOnce(ctx); err != nil {
		t.Fatalf("first sync through Sentinel: %v", err)
	}
	mc := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer mc.Close()
	if n, err := mc.Exists(ctx, "spillway:{payments}:live").Result(); err != nil || n != 1 {
		t.Fatalf("the master Sentinel names has no member key: exists %d, %v", n, err)
	}

	master.Stop()
	killed := time.Now()
	var failed int
	for {
		err := s.SyncOnce(ctx)
		st := m.Status(time.Now())
		if err == nil {
			if st.Mode != "synced" || st.Live != 1 || rate != 1000 {
				t.Errorf("after the failover: mode %s, live %d, rate %v; want synced, 1, 1000", st.Mode, st.Live, rate)
			}
			break
		}
		failed++
		if st.Mode != "fail_static" || rate != 1000 {
			t.Fatalf("master down: mode %s, rate %v; want fail_static holding 1000", st.Mode, rate)
		}
		if time.Since(killed) > 20*time.Second {
			t.Fatalf("no sync answered within 20 s of the master's death: %v", err)
		}
		time.Sleep(s.Interval())
	}
	t.Logf("syncs answered again %v after the master died (%d failed meanwhile)", time.Since(killed).Round(10*time.Millisecond), failed)
	if n, err := rc.Exists(ctx, "spillway:{payments}:live").Result(); err != nil || n != 1 {
		t.Errorf("the promoted replica has no member key: exists %d, %v", n, err)
	}
}

func containsLine(text, line string) bool {
	for len(text) > 0 {
		var l string
		l, text, _ = strings.Cut(text, "\n")
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if l == line {
			return true
		}
	}
	return false
}
