"""The seed agent's code path against a live engine.

The seed's RealAppEnv talks to the engine with `requests`: GET /metrics and
POST /set_rate per API, one step per second. This test builds an env that
makes exactly those calls, pointed at the address of a live Spillway engine
(``spillway sim --serve``: the boutique app on loopback behind the topfull
policy, in real time) instead of one found with kubectl, and shows that a
rate it posts is what the token bucket admits.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import requests

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeedEnv:
    """The seed's RealAppEnv calls, minus gymnasium, kubectl and slo.py."""

    def __init__(self, server_address, apis):
        self.server_address = server_address
        self.apis = apis
        self.rate_limits = {api: 1000 for api in apis}

    def _get_observation(self):
        aggregate_goodput, aggregate_rate_limit, max_latency = 0, 0, 0
        for api in self.apis:
            response = requests.get(f"{self.server_address}/metrics", params={"method": api}, timeout=5)
            metrics = response.json()
            aggregate_goodput += metrics["goodput"]
            aggregate_rate_limit += self.rate_limits[api]
            max_latency = max(max_latency, metrics["latency"])
        ratio = aggregate_goodput / aggregate_rate_limit if aggregate_rate_limit > 0 else 0
        return ratio, max_latency

    def set_rate(self, api, rate):
        self.rate_limits[api] = rate
        return requests.post(f"{self.server_address}/set_rate", params={"method": api},
                             json={"rate_limit": self.rate_limits[api]}, timeout=5)


class SeedCodePathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        go = shutil.which("go") or "/usr/local/go/bin/go"
        cls.tmp = tempfile.mkdtemp()
        binary = os.path.join(cls.tmp, "spillway")
        subprocess.run([go, "build", "-o", binary, "./cmd/spillway"], cwd=REPO, check=True)
        port = free_port()
        cls.url = f"http://127.0.0.1:{port}"
        cls.proc = subprocess.Popen(
            [binary, "sim", "--serve", "--app", "boutique", "--scenario", "steady", "--load", "0.5",
             "--warmup", "1s", "--duration", "20s", "--policy", "topfull", "--agent-addr", f"127.0.0.1:{port}"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{cls.url}/apis", timeout=1).json()["apis"]:
                    break
            except (requests.ConnectionError, ValueError, KeyError):
                pass
            if time.time() > deadline or cls.proc.poll() is not None:
                raise RuntimeError("spillway sim --serve did not come up")
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=10)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_posted_rates_are_enforced(self):
        apis = [a["name"] for a in requests.get(f"{self.url}/apis", timeout=5).json()["apis"]]
        self.assertEqual(sorted(apis), ["GET /cart", "GET /checkout", "GET /home", "GET /product"])
        env = SeedEnv(self.url, apis)
        ratio, latency = env._get_observation()
        self.assertGreaterEqual(ratio, 0)
        self.assertGreaterEqual(latency, 0)

        # Until an API's first set_rate it is on the policy's fallback,
        # whose concurrency limit guards the whole control point; the seed
        # agent's steps post every API in time. Post them all now.
        for api in apis:
            self.assertEqual(env.set_rate(api, 1000).status_code, 200)
        # GET /home is offered about 190 req/s; the seed agent cuts it to
        # 120.5 (its lower bound is 100).
        response = env.set_rate("GET /home", 120.5)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, b"")
        home = {}
        for _ in range(4):  # the seed's one-second steps
            time.sleep(1)
            env._get_observation()
            home = requests.get(f"{self.url}/metrics", params={"method": "GET /home"}, timeout=5).json()
        info = {a["name"]: a for a in requests.get(f"{self.url}/apis", timeout=5).json()["apis"]}
        self.assertEqual(info["GET /home"]["rate_limit"], 120.5)  # kept as a float, not truncated
        self.assertEqual(info["GET /home"]["mode"], "agent")
        self.assertGreater(info["GET /home"]["offered_rps"], 100)
        # One second of a 120.5/s bucket admits 120 or 121, plus a burst of
        # 0.05 s of tokens.
        self.assertLessEqual(home["goodput"], 120.5 + 6.1 + 1)
        self.assertGreaterEqual(home["goodput"], 95)
        # The other APIs, still at the initial 1000/s (or their upper bound),
        # are not limited by their buckets.
        product = requests.get(f"{self.url}/metrics", params={"method": "GET /product"}, timeout=5).json()
        self.assertGreater(product["goodput"], 200)

    def test_the_seed_protocol_errors_are_loud(self):
        bad = requests.post(f"{self.url}/set_rate", params={"method": "GET /nope"}, json={"rate_limit": 5}, timeout=5)
        self.assertEqual(bad.status_code, 404)
        self.assertIn("error", bad.json())
        missing = requests.post(f"{self.url}/set_rate", params={"method": "GET /home"}, json={}, timeout=5)
        self.assertEqual(missing.status_code, 400)
        negative = requests.post(f"{self.url}/set_rate", params={"method": "GET /home"}, json={"rate_limit": -1}, timeout=5)
        self.assertEqual(negative.status_code, 400)


if __name__ == "__main__":
    unittest.main()
