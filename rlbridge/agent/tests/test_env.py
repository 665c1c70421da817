"""SpillwayEnv and SpillwayClient against the in-process fake engine."""

import io
import json
import math
import os
import time
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from fake_server import FakeSpillway, default_apis  # noqa: E402
from spillway_agent import cli  # noqa: E402
from spillway_agent.client import SpillwayClient, SpillwayHTTPError  # noqa: E402
from spillway_agent.env import SpillwayEnv  # noqa: E402


def wall_env(fake, **kw):
    """A non-lockstep env that does not sleep between steps."""
    kw.setdefault("cluster", "default")
    return SpillwayEnv(SpillwayClient(fake.url), step_interval_s=0.0, **kw)


class ResetTest(unittest.TestCase):
    def test_reset_posts_clamped_initial_rate_for_every_cluster_api(self):
        with FakeSpillway() as fake:
            env = wall_env(fake, initial_rate=1000.0)
            env.reset()
            posts = [(q["method"], b["rate_limit"]) for _, _, q, b, _ in fake.calls("POST", "/set_rate")]
            self.assertEqual(posts, [("GET /home", 1000.0), ("GET /cart", 500.0), ("GET /ads", 1500.0)])
            self.assertEqual(env.rates, {"GET /home": 1000.0, "GET /cart": 500.0, "GET /ads": 1500.0})
            self.assertEqual(fake.api("GET /cart")["rate_limit"], 500.0)
            self.assertEqual(env.slo_ms, 120.0)
            self.assertEqual(env.reward_scale, 1000.0)

    def test_reset_again_reposts_after_the_agent_moved_rates(self):
        with FakeSpillway() as fake:
            env = wall_env(fake, apply="seed")
            env.reset()
            env.step([-0.5])  # least important (home, prio 4) 1000 -> 500
            self.assertEqual(fake.api("GET /home")["rate_limit"], 500.0)
            fake.clear()
            env.reset()
            self.assertEqual(len(fake.calls("POST", "/set_rate")), 3)
            self.assertEqual(fake.api("GET /home")["rate_limit"], 1000.0)

    def test_no_cluster_means_all_apis_and_unknown_cluster_fails(self):
        with FakeSpillway() as fake:
            env = wall_env(fake, cluster=None)
            env.reset()
            self.assertEqual(len(env.apis), 4)
            with self.assertRaisesRegex(ValueError, "nope"):
                wall_env(fake, cluster="nope").reset()


class ObservationRewardTest(unittest.TestCase):
    def test_observation_is_goodput_ratio_and_max_latency(self):
        with FakeSpillway() as fake:
            fake.fixed_metrics = {"GET /home": (600.0, 90.0), "GET /cart": (250.0, 140.0),
                                  "GET /ads": (100.0, 30.0), "GET /other": (1.0, 9999.0)}
            env = wall_env(fake)
            obs, info = env.reset()
            self.assertEqual(obs.dtype, np.float32)
            self.assertEqual(obs.shape, (2,))
            # (600 + 250 + 100) / (1000 + 500 + 1500); the other cluster is ignored.
            self.assertAlmostEqual(float(obs[0]), 950.0 / 3000.0, places=6)
            self.assertEqual(float(obs[1]), 140.0)
            self.assertEqual(info["goodput"], 950.0)

    def test_a_global_rate_is_observed_through_this_engines_share(self):
        # Every API's rate is the fleet's, and this engine holds a quarter
        # of it: its goodput answers to a quarter of the agent's rates.
        apis = default_apis()
        for a in apis:
            limit = min(a["upper_bound"], max(a["lower_bound"], 1000.0))
            a["limit_in_force"] = limit
            a["global"] = {"key": "fleet/" + a["name"], "share": limit / 4}
        with FakeSpillway(apis=apis) as fake:
            fake.fixed_metrics = {"GET /home": (600.0, 90.0), "GET /cart": (250.0, 140.0),
                                  "GET /ads": (100.0, 30.0), "GET /other": (1.0, 9999.0)}
            obs, _ = wall_env(fake).reset()
            self.assertAlmostEqual(float(obs[0]), 950.0 / 750.0, places=5)
            # No share in force (null): the agent's own rate.
            for a in fake.apis:
                a["global"]["share"] = None
            obs, _ = wall_env(fake).reset()
            self.assertAlmostEqual(float(obs[0]), 950.0 / 3000.0, places=6)

    def test_an_api_that_stops_being_global_drops_its_share(self):
        # The server omits "global" once the rate is local again (a reload
        # changed its scope): the agent must stop scaling by the old share.
        from spillway_agent.env import _refresh
        info = {"name": "GET /x", "global": {"key": "fleet/GET /x", "share": 50.0}}
        _refresh(info, {"offered_rps": 10.0, "limit_in_force": 200.0})
        self.assertNotIn("global", info)
        self.assertEqual(info["limit_in_force"], 200.0)
        _refresh(info, {"global": {"key": "k", "share": 25.0}})
        self.assertEqual(info["global"]["share"], 25.0)

    def test_zero_rate_sum_gives_zero_ratio(self):
        apis = [{"name": "GET /x", "cluster": "default", "priority": 1, "slo_ms": 100,
                 "sustainable_rps": 0, "lower_bound": 0, "upper_bound": 0, "offered_rps": 0}]
        with FakeSpillway(apis=apis) as fake:
            fake.fixed_metrics = {"GET /x": (5.0, 10.0)}
            obs, _ = wall_env(fake).reset()
            self.assertEqual(float(obs[0]), 0.0)

    def test_reward_is_delta_goodput_minus_latency_penalty(self):
        with FakeSpillway() as fake:
            fake.fixed_metrics = {"GET /home": (600.0, 90.0), "GET /cart": (250.0, 150.0),
                                  "GET /ads": (100.0, 30.0)}
            env = wall_env(fake, rho=0.01)
            env.reset()
            _, r1, term, trunc, info = env.step([0.0])
            # first step after reset: no delta; max SLO 120, max p95 150 -> 0.01 * 30
            self.assertAlmostEqual(r1, -0.3)
            self.assertFalse(term or trunc)
            fake.fixed_metrics["GET /home"] = (700.0, 400.0)
            _, r2, _, _, info = env.step([0.0])
            self.assertAlmostEqual(r2, 100.0 - 0.01 * (400.0 - 120.0))
            self.assertEqual(info["latency"], 400.0)
            fake.fixed_metrics["GET /home"] = (650.0, 50.0)
            fake.fixed_metrics["GET /cart"] = (250.0, 100.0)
            _, r3, _, _, _ = env.step([0.0])
            self.assertAlmostEqual(r3, -50.0)

    def test_wall_clock_step_posts_every_rate_as_heartbeat_and_mirrors_clamping(self):
        with FakeSpillway() as fake:
            env = wall_env(fake, apply="seed")
            env.reset()
            fake.clear()
            _, _, _, _, info = env.step([0.5])  # cart is most important, at its bound 500
            # cart cannot go up, next is ads (1500 -> 2250); on the wall
            # clock every rate is posted, changed or not: set_rate is the
            # agent's heartbeat
            posts = [(q["method"], b["rate_limit"]) for _, _, q, b, _ in fake.calls("POST", "/set_rate")]
            self.assertEqual(posts, [("GET /home", 1000.0), ("GET /cart", 500.0), ("GET /ads", 2250.0)])
            self.assertEqual(info["rates"]["GET /ads"], 2250.0)
            # wall-clock mode reads /metrics per API and /apis for offered load
            self.assertEqual(len(fake.calls("GET", "/metrics")), 3)
            self.assertEqual(len(fake.calls("GET", "/apis")), 1)
            self.assertEqual(fake.calls("POST", "/step"), [])

    def test_max_steps_truncates(self):
        with FakeSpillway() as fake:
            env = wall_env(fake, max_steps=2)
            env.reset()
            self.assertFalse(env.step([0.1])[3])
            _, _, term, trunc, _ = env.step([0.1])
            self.assertTrue(trunc)
            self.assertFalse(term)


class LockstepTest(unittest.TestCase):
    def test_lockstep_uses_step_and_reads_metrics_from_its_body(self):
        with FakeSpillway(episode_ticks=3) as fake:
            env = SpillwayEnv(SpillwayClient(fake.url), cluster="default", lockstep=True,
                              max_steps=50)
            obs, info = env.reset()
            self.assertEqual(len(fake.calls("POST", "/step")), 1)  # fresh first observation
            self.assertEqual(info["tick"], 1)
            _, _, term, trunc, info = env.step([-0.2])
            self.assertEqual(info["tick"], 2)
            self.assertFalse(term)
            _, _, term, trunc, info = env.step([-0.2])
            self.assertTrue(term)  # the server said done
            self.assertFalse(trunc)
            self.assertEqual(fake.calls("GET", "/metrics"), [])
            self.assertEqual(len(fake.calls("POST", "/step")), 3)
            with self.assertRaises(SpillwayHTTPError) as cm:
                env.step([0.0])
            self.assertEqual(cm.exception.status, 409)
            self.assertIn("scenario is over", str(cm.exception))

    def test_v2_observation_and_optimal_reward(self):
        with FakeSpillway(episode_ticks=5) as fake:
            env = SpillwayEnv(SpillwayClient(fake.url), cluster="default", lockstep=True,
                              obs="v2", reward="optimal", slo_penalty=0.2)
            obs, _ = env.reset()
            self.assertEqual(obs.shape, (7,))
            obs, reward, _, _, info = env.step([0.0])
            body = fake.last_step_body
            names = [a["name"] for a in env.apis]
            goodput = sum(body["apis"][n]["goodput"] for n in names)
            optimal = sum(body["apis"][n]["optimal_rps"] for n in names)
            worst = max(body["apis"][a["name"]]["latency"] / a["slo_ms"] for a in env.apis)
            self.assertAlmostEqual(reward, min(1.5, goodput / optimal) - 0.2 * max(0.0, worst - 1.0), places=5)
            passed = sum(min(env.rates[n], body["apis"][n]["offered_rps"]) for n in names)
            self.assertAlmostEqual(float(obs[0]), min(1.5, goodput / passed), places=5)
            self.assertAlmostEqual(float(obs[1]), math.log1p(worst), places=5)
            self.assertAlmostEqual(float(obs[6]), 0.0)  # the previous action

    def test_lockstep_observation_matches_server_metrics(self):
        with FakeSpillway() as fake:
            env = SpillwayEnv(SpillwayClient(fake.url), cluster="default", lockstep=True)
            obs, _ = env.reset()
            ms = [fake.metrics_of(fake.api(n)) for n in ("GET /home", "GET /cart", "GET /ads")]
            want_ratio = sum(m["goodput"] for m in ms) / 3000.0
            self.assertAlmostEqual(float(obs[0]), want_ratio, places=6)
            self.assertAlmostEqual(float(obs[1]), max(m["latency"] for m in ms), places=3)

    def test_reset_with_seed_calls_reset_and_adopts_the_new_app(self):
        with FakeSpillway() as fake:
            env = SpillwayEnv(SpillwayClient(fake.url), lockstep=True, reset_seed=7)
            env.reset()
            resets = fake.calls("POST", "/reset")
            self.assertEqual([b for _, _, _, b, _ in resets], [{"seed": 7}])
            self.assertTrue(all(a["name"].startswith("GET /api") for a in env.apis))
            self.assertEqual(set(env.rates), {a["name"] for a in fake.apis})
            env.reset(seed=8)
            self.assertEqual(fake.calls("POST", "/reset")[-1][3], {"seed": 8})

    def test_lockstep_reset_starts_an_episode_when_the_server_has_none(self):
        with FakeSpillway(apis=[]) as fake:
            env = SpillwayEnv(SpillwayClient(fake.url), lockstep=True)
            env.reset()
            self.assertEqual([r[3] for r in fake.calls("POST", "/reset")], [{}])
            self.assertGreaterEqual(len(env.apis), 2)

    def test_reset_without_seed_does_not_call_reset(self):
        with FakeSpillway() as fake:
            env = SpillwayEnv(SpillwayClient(fake.url), lockstep=True)
            env.reset()
            self.assertEqual(fake.calls("POST", "/reset"), [])


class ServicesTest(unittest.TestCase):
    """The env marks each API whose services are all clear (path_clear),
    from /step's services in lock step and GET /services on the wall
    clock, so that the cost rule may raise it faster."""

    def apis(self):
        apis = default_apis()
        apis[0]["services"] = ["db"]           # GET /home
        apis[1]["services"] = ["cart", "db"]   # GET /cart
        apis[2]["services"] = ["ads"]          # GET /ads
        return apis

    def check(self, env):
        env.act([0.1])
        by = {a["name"]: a for a in env.apis}
        self.assertEqual(env.busy, {"db"})
        self.assertIs(by["GET /home"]["path_clear"], False)
        self.assertIs(by["GET /cart"]["path_clear"], False)
        self.assertIs(by["GET /ads"]["path_clear"], True)

    def test_lockstep_reads_the_busy_services_from_step(self):
        with FakeSpillway(apis=self.apis(), episode_ticks=10) as fake:
            fake.services = ["db", "cart", "ads"]
            fake.overloaded_at = lambda tick: {"db"}
            env = SpillwayEnv(SpillwayClient(fake.url), cluster="default", lockstep=True)
            env.reset()
            env.step([0.0])
            self.check(env)
            self.assertEqual(fake.calls("GET", "/services"), [])

    def test_wall_clock_reads_get_services(self):
        with FakeSpillway(apis=self.apis()) as fake:
            fake.services = ["db", "cart", "ads"]
            fake.overloaded_at = lambda tick: {"db"}
            env = wall_env(fake)
            env.reset()
            env.step([0.0])
            self.check(env)

    def test_a_busy_service_is_one_at_0_7_of_capacity_or_overloaded(self):
        from spillway_agent.clusters import busy_services
        busy = busy_services([
            {"name": "a", "utilisation": 0.69, "overloaded": False},
            {"name": "b", "utilisation": 0.7, "overloaded": False},
            {"name": "c", "utilisation": 0.2, "overloaded": True},
            {"name": "d", "utilisation": None, "overloaded": False},
            {"name": "e", "utilisation": "high"},
            {"utilisation": 0.1},
            "junk",
        ])
        self.assertEqual(busy, {"b", "c", "d", "e"})

    def test_without_service_signals_no_api_is_marked(self):
        with FakeSpillway(apis=self.apis()) as fake:  # /services answers 404
            env = wall_env(fake)
            env.reset()
            env.step([0.0])
            env.step([0.0])
            env.act([0.1])
            self.assertIsNone(env.busy)
            self.assertTrue(all("path_clear" not in a for a in env.apis))
            self.assertEqual(len(fake.calls("GET", "/services")), 1)  # asked once


class ClientTest(unittest.TestCase):
    def test_errors_carry_status_and_server_message(self):
        with FakeSpillway() as fake:
            c = SpillwayClient(fake.url)
            with self.assertRaises(SpillwayHTTPError) as cm:
                c.metrics("GET /nope")
            self.assertEqual(cm.exception.status, 404)
            self.assertEqual(cm.exception.message, "unknown api 'GET /nope'")
            self.assertIn("unknown api", str(cm.exception))

    def test_reset_not_available_on_a_real_engine(self):
        with FakeSpillway(virtual=False) as fake:
            with self.assertRaises(SpillwayHTTPError) as cm:
                SpillwayClient(fake.url).reset(1)
            self.assertEqual(cm.exception.status, 404)

    def test_api_names_with_spaces_and_slashes_round_trip(self):
        with FakeSpillway() as fake:
            SpillwayClient(fake.url).set_rate("GET /home", 123.0)
            self.assertEqual(fake.api("GET /home")["rate_limit"], 123.0)

    def test_token_header_sent_on_every_request(self):
        with FakeSpillway(token="s3cret") as fake:
            env = SpillwayEnv(SpillwayClient(fake.url, token="s3cret"), lockstep=True,
                              reset_seed=3)
            env.reset()
            env.step([0.1])
            self.assertGreater(len(fake.requests), 3)
            self.assertTrue(all(r[4] == "Bearer s3cret" for r in fake.requests))
            with self.assertRaises(SpillwayHTTPError) as cm:
                SpillwayClient(fake.url).apis()
            self.assertEqual(cm.exception.status, 401)
            self.assertIn("bearer token", cm.exception.message)

    def test_token_file_is_read_and_stripped(self):
        with FakeSpillway(token="tok") as fake, tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "token")
            with open(path, "w") as f:
                f.write("  tok\n")
            model = os.path.join(d, "m.json")
            with redirect_stdout(io.StringIO()):
                rc = cli.main(["train", "--sim", fake.url, "--steps", "8", "--out", model,
                               "--n-steps", "8", "--batch-size", "4", "--n-epochs", "1",
                               "--eval-every", "0", "--max-steps", "4", "--token-file", path])
            self.assertEqual(rc, 0)
            self.assertTrue(all(r[4] == "Bearer tok" for r in fake.requests))


class CLITest(unittest.TestCase):
    def test_train_then_run(self):
        with FakeSpillway(episode_ticks=10_000) as fake, tempfile.TemporaryDirectory() as d:
            model = os.path.join(d, "model.json")
            out = io.StringIO()
            with redirect_stdout(out):
                rc = cli.main(["train", "--sim", fake.url, "--steps", "64", "--out", model,
                               "--seed", "1", "--n-steps", "32", "--batch-size", "16",
                               "--n-epochs", "2", "--eval-every", "1", "--eval-seeds", "5,6",
                               "--max-steps", "8"])
            text = out.getvalue()
            self.assertEqual(rc, 0, text)
            self.assertEqual(text.count("update "), 4)  # 2 progress lines + 2 evals
            self.assertIn("mean_goodput_ratio", text)
            self.assertTrue(os.path.exists(model))
            self.assertTrue(os.path.exists(os.path.join(d, "model.final.json")))
            with open(model) as f:
                doc = json.load(f)
            self.assertEqual(doc["format"], "spillway-ppo")
            self.assertIn("eval", doc["meta"])

            fake._load(fake.apis)  # a fresh scenario for the run
            fake.episode_ticks = 25
            out = io.StringIO()
            with redirect_stdout(out):
                rc = cli.main(["run", "--server", fake.url, "--model", model, "--lockstep",
                               "--steps", "100"])
            text = out.getvalue()
            self.assertEqual(rc, 0, text)
            # reset takes tick 1, so the server is done after 24 steps
            self.assertEqual([l.split()[1] for l in text.splitlines() if l.startswith("step ")],
                             ["1", "10", "20", "24"])
            self.assertIn("scenario done", text)

    def test_wall_clock_run_steps_after_each_engine_tick(self):
        with FakeSpillway(virtual=False) as fake, tempfile.TemporaryDirectory() as d:
            fake.tick_every_s = 0.05
            model = os.path.join(d, "m.json")
            from spillway_agent.ppo import PPOAgent
            PPOAgent(seed=0, features={"obs": "v2"}).save(model)
            begin = time.monotonic()
            with redirect_stdout(io.StringIO()):
                rc = cli.main(["run", "--server", fake.url, "--model", model, "--steps", "6",
                               "--interval", "10"])
            took = time.monotonic() - begin
            self.assertEqual(rc, 0)
            # Paced by the engine's 50 ms ticks, not by the 10 s interval.
            self.assertLess(took, 5.0)
            # Every step posts every API's rate: the agent's heartbeat.
            self.assertGreaterEqual(len(fake.calls("POST", "/set_rate")), 6 * len(fake.apis))

    def test_run_reports_server_errors(self):
        with FakeSpillway(token="x") as fake, tempfile.TemporaryDirectory() as d:
            model = os.path.join(d, "m.json")
            from spillway_agent.ppo import PPOAgent
            PPOAgent(seed=0).save(model)
            err = io.StringIO()
            from contextlib import redirect_stderr
            with redirect_stderr(err), redirect_stdout(io.StringIO()):
                rc = cli.main(["run", "--server", fake.url, "--model", model, "--steps", "1"])
            self.assertEqual(rc, 1)
            self.assertIn("HTTP 401", err.getvalue())


if __name__ == "__main__":
    unittest.main()
