"""Dynamic clusters: formation from the overloaded services, merges and
splits, and ``run --clusters dynamic`` against the fake engine."""

import io
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from fake_server import FakeSpillway  # noqa: E402
from spillway_agent import cli  # noqa: E402
from spillway_agent.client import SpillwayClient  # noqa: E402
from spillway_agent.clusters import (UNLOADED, DynamicClusters, form_clusters,  # noqa: E402
                                     overloaded_services)
from spillway_agent.env import SpillwayEnv  # noqa: E402
from spillway_agent.ppo import PPOAgent  # noqa: E402


def api(name, services, cluster="default", priority=1):
    return {"name": name, "cluster": cluster, "priority": priority, "slo_ms": 100,
            "sustainable_rps": 100, "lower_bound": 10, "upper_bound": 1000,
            "offered_rps": 200, "services": services}


# testbed/apps/multi-bottleneck.json: browse crosses db, search index,
# order and report both.
MULTI = [
    api("browse", ["frontend", "db"]),
    api("search", ["frontend", "index"]),
    api("order", ["frontend", "db", "index"]),
    api("report", ["frontend", "db", "index"]),
]


class FormClustersTest(unittest.TestCase):
    def test_nothing_overloaded_leaves_every_api_unloaded(self):
        self.assertEqual(form_clusters(MULTI, set()),
                         [(UNLOADED, ["browse", "search", "order", "report"])])

    def test_one_overloaded_service_clusters_the_apis_that_cross_it(self):
        self.assertEqual(form_clusters(MULTI, {"db"}),
                         [(UNLOADED, ["search"]), ("db", ["browse", "order", "report"])])
        self.assertEqual(form_clusters(MULTI, {"index"}),
                         [(UNLOADED, ["browse"]), ("index", ["search", "order", "report"])])

    def test_an_api_across_two_overloaded_services_merges_their_clusters(self):
        self.assertEqual(form_clusters(MULTI, {"db", "index"}),
                         [("db+index", ["browse", "search", "order", "report"])])

    def test_without_a_shared_api_two_overloads_stay_apart(self):
        apis = [api("a", ["s1"]), api("b", ["s2"]), api("c", ["s3"])]
        self.assertEqual(form_clusters(apis, {"s1", "s2"}),
                         [(UNLOADED, ["c"]), ("s1", ["a"]), ("s2", ["b"])])

    def test_a_chain_of_shared_services_is_one_cluster(self):
        # a and c share no service; b crosses an overloaded service of each.
        apis = [api("a", ["s1"]), api("b", ["s1", "s2"]), api("c", ["s2"]), api("d", ["s3"])]
        self.assertEqual(form_clusters(apis, {"s1", "s2", "s3"}),
                         [("s1+s2", ["a", "b", "c"]), ("s3", ["d"])])

    def test_an_api_without_services_keeps_its_static_cluster(self):
        apis = MULTI + [{"name": "legacy", "cluster": "batch"}, {"name": "old", "cluster": "batch",
                                                               "services": []}]
        self.assertEqual(form_clusters(apis, {"db"}),
                         [(UNLOADED, ["search"]), ("db", ["browse", "order", "report"]),
                          ("static:batch", ["legacy", "old"])])

    def test_an_unknown_overloaded_service_changes_nothing(self):
        self.assertEqual(form_clusters(MULTI, {"elsewhere"}), form_clusters(MULTI, set()))

    def test_overloaded_services_reads_the_verdicts(self):
        services = [{"name": "db", "overloaded": True}, {"name": "index", "overloaded": False},
                    {"name": "cache", "utilisation": None, "queueing_ms": None, "overloaded": False}]
        self.assertEqual(overloaded_services(services), {"db"})
        self.assertEqual(overloaded_services(None), set())


class NoClient:
    """A client that fails the test on any request: re-forming must not
    talk to the server."""

    def __getattr__(self, name):
        raise AssertionError(f"re-forming called the server: {name}")


class ReformTest(unittest.TestCase):
    def setUp(self):
        self.rates = {a["name"]: 100.0 + i for i, a in enumerate(MULTI)}
        self.made = []

        def make_env(name):
            env = SpillwayEnv(NoClient(), cluster=name, apply="cost", max_steps=None,
                              lockstep=True, obs="v2")
            self.made.append(env)
            return env
        self.clusters = DynamicClusters(make_env, self.rates)

    def test_merge_makes_a_new_env_and_keeps_the_rates(self):
        first = self.clusters.reform(MULTI, {"db"})
        self.assertEqual([(n, [a["name"] for a in e.apis], new) for n, e, new in first],
                         [(UNLOADED, ["search"], True), ("db", ["browse", "order", "report"], True)])
        db_env = first[1][1]
        db_env.rates["browse"] = 42.0  # an action moved a rate
        db_env.costs["browse"] = 4.0
        db_env._last_action, db_env._prev_feats = 0.3, (0.9, 0.1)

        merged = self.clusters.reform(MULTI, {"db", "index"})
        self.assertEqual(len(merged), 1)
        name, env, new = merged[0]
        self.assertEqual(name, "db+index")
        self.assertTrue(new)
        self.assertIsNot(env, db_env)
        self.assertEqual([a["name"] for a in env.apis], ["browse", "search", "order", "report"])
        # Per-API state carries over; the cluster's history starts afresh.
        self.assertIs(env.rates, self.rates)
        self.assertEqual(env.rates["browse"], 42.0)
        self.assertEqual(env.costs["browse"], 4.0)
        self.assertEqual((env._last_action, env._prev_feats, env._prev_goodput), (0.0, None, None))
        self.assertEqual(self.clusters.forms, 2)

    def test_split_makes_new_envs_and_an_unchanged_cluster_keeps_its_own(self):
        merged = self.clusters.reform(MULTI, {"db", "index"})[0][1]
        split = self.clusters.reform(MULTI, {"index"})
        self.assertEqual([(n, [a["name"] for a in e.apis], new) for n, e, new in split],
                         [(UNLOADED, ["browse"], True), ("index", ["search", "order", "report"], True)])
        self.assertNotIn(merged, [e for _, e, _ in split])
        index_env = split[1][1]
        index_env._last_action = -0.2

        again = self.clusters.reform(MULTI, {"index"})
        self.assertEqual([(n, e, new) for n, e, new in again],
                         [(UNLOADED, split[0][1], False), ("index", index_env, False)])
        self.assertEqual(index_env._last_action, -0.2)
        self.assertEqual(self.clusters.forms, 2)  # the third re-form changed nothing
        self.assertEqual(len(self.made), 3)

    def test_same_apis_under_another_overload_keep_their_env(self):
        # browse, order, report cluster through db; if db cools and the same
        # three APIs were to meet through another service, the cluster is
        # the same and so is its env (only its name changes).
        apis = [api("a", ["s1", "s2"]), api("b", ["s1", "s2"])]
        env = self.clusters.reform(apis, {"s1"})[0][1]
        name, again, new = self.clusters.reform(apis, {"s2"})[0]
        self.assertEqual((name, new), ("s2", False))
        self.assertIs(again, env)
        self.assertEqual(env.cluster, "s2")


class RecordingClient:
    """Records set_rate calls."""

    def __init__(self):
        self.posts = []

    def set_rate(self, name, rate):
        self.posts.append((name, rate))


class RelaxTest(unittest.TestCase):
    def env(self, lockstep=True):
        client = RecordingClient()
        env = SpillwayEnv(client, apply="cost", max_steps=None, lockstep=lockstep, obs="v2")
        apis = [dict(api("a", ["s"]), offered_rps=1000.0, goodput_rps=5.0),
                dict(api("b", ["s"]), offered_rps=50.0),
                dict(api("c", ["s"]), offered_rps=0.0)]
        env.adopt(apis, {"a": 100.0, "b": 100.0, "c": 0.0}, {})
        return env, client

    def test_raises_towards_demand_by_a_bounded_step(self):
        env, client = self.env()
        self.assertEqual(env.relax(), 0.5)
        # a: +25 % (1.1 × 1000 is far), though it delivered only 5/s of
        # goodput; b: never lowered below its rate, though 1.1 × 50 is
        # less; c: with no demand and a rate of 0, its lower bound.
        self.assertEqual(env.rates, {"a": 125.0, "b": 100.0, "c": 10.0})
        self.assertEqual(client.posts, [("a", 125.0), ("c", 10.0)])  # lock step: changes only
        for _ in range(20):
            env.relax()
        self.assertEqual(env.rates["a"], 1000.0)  # the upper bound, below 1.1 × 1000

    def test_wall_clock_posts_every_rate(self):
        env, client = self.env(lockstep=False)
        env.relax()
        self.assertEqual([n for n, _ in client.posts], ["a", "b", "c"])


def _model(d):
    path = os.path.join(d, "m.json")
    PPOAgent(seed=0, features={"obs": "v2"}).save(path)
    return path


class RunDynamicTest(unittest.TestCase):
    def apis(self):
        return [dict(a, offered_rps=300, sustainable_rps=200) for a in MULTI]

    def test_lockstep_run_follows_the_overloads(self):
        with FakeSpillway(apis=self.apis(), episode_ticks=30) as fake, \
                tempfile.TemporaryDirectory() as d:
            fake.services = ["db", "index"]
            fake.overloaded_at = lambda t: set() if t < 10 else {"db"} if t < 20 else {"db", "index"}
            out = io.StringIO()
            with redirect_stdout(out):
                rc = cli.main(["run", "--server", fake.url, "--model", _model(d), "--lockstep",
                               "--clusters", "dynamic", "--steps", "100"])
            text = out.getvalue()
            self.assertEqual(rc, 0, text)
            lines = {l.split()[1]: l for l in text.splitlines() if l.startswith("step ")}
            self.assertIn(f"clusters {UNLOADED}: 4 ", lines["1"])
            self.assertIn(f"clusters {UNLOADED}: 1 | db: 3 ", lines["10"])
            self.assertIn("clusters db+index: 4 ", lines["20"])
            self.assertIn("re-forms 3", lines["20"])
            self.assertIn("scenario done", text)
            # Lock step reads the services from /step, never GET /services.
            self.assertEqual(fake.calls("GET", "/services"), [])
            # Every API's rate was posted once at the start, as in a static run.
            first = [q["method"] for _, _, q, _, _ in fake.calls("POST", "/set_rate")[:4]]
            self.assertEqual(sorted(first), sorted(a["name"] for a in MULTI))

    def test_wall_clock_run_reads_get_services(self):
        with FakeSpillway(apis=self.apis(), virtual=False) as fake, \
                tempfile.TemporaryDirectory() as d:
            fake.tick_every_s = 0.02
            fake.services = ["db", "index"]
            fake.overloaded_at = lambda t: {"index"}
            out = io.StringIO()
            with redirect_stdout(out):
                rc = cli.main(["run", "--server", fake.url, "--model", _model(d),
                               "--clusters", "dynamic", "--steps", "3", "--interval", "10"])
            self.assertEqual(rc, 0, out.getvalue())
            self.assertIn(f"clusters {UNLOADED}: 1 | index: 3 ", out.getvalue())
            self.assertGreaterEqual(len(fake.calls("GET", "/services")), 4)
            # Every step posts every API's rate: the agent's heartbeat.
            self.assertGreaterEqual(len(fake.calls("POST", "/set_rate")), 4 * 4)

    def test_a_server_without_services_is_a_clear_error(self):
        with FakeSpillway(apis=self.apis(), virtual=False) as fake, \
                tempfile.TemporaryDirectory() as d:
            err = io.StringIO()
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                rc = cli.main(["run", "--server", fake.url, "--model", _model(d),
                               "--clusters", "dynamic", "--steps", "1"])
            self.assertEqual(rc, 1)
            self.assertIn("--clusters dynamic needs the server's per-service overload", err.getvalue())

    def test_cluster_and_dynamic_do_not_mix(self):
        with FakeSpillway() as fake, tempfile.TemporaryDirectory() as d:
            err = io.StringIO()
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                rc = cli.main(["run", "--server", fake.url, "--model", _model(d),
                               "--clusters", "dynamic", "--cluster", "default", "--steps", "1"])
            self.assertEqual(rc, 1)
            self.assertIn("cannot go with --clusters dynamic", err.getvalue())


if __name__ == "__main__":
    unittest.main()
