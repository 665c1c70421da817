"""An in-process fake of the engine's RL-bridge HTTP protocol, for tests.

It serves ``/apis``, ``/metrics``, ``/set_rate``, ``/services``, ``/step`` and ``/reset``
from a ``ThreadingHTTPServer`` on a free localhost port and records every
request, so tests can check both what the agent computes and what it sends.

Its "app" is a toy: an API admits ``min(rate_limit, offered_rps)``; goodput
is the admitted rate up to ``sustainable_rps`` and falls off beyond it, and
p95 latency grows with the overload. Tests can pin an API's metrics with
``fake.fixed_metrics[name] = (goodput, latency_ms)``.

Per-service overload (``GET /services``, and ``services`` in ``/step``) is
served only once a test sets ``fake.services`` to the service names;
``fake.overloaded_at(tick)`` then says which are overloaded at a tick.
"""

import json
import random
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def default_apis():
    return [
        {"name": "GET /home", "policy": "p", "cluster": "default", "priority": 4, "slo_ms": 100,
         "sustainable_rps": 500, "lower_bound": 10, "upper_bound": 2000, "offered_rps": 800},
        {"name": "GET /cart", "policy": "p", "cluster": "default", "priority": 1, "slo_ms": 120,
         "sustainable_rps": 300, "lower_bound": 10, "upper_bound": 500, "offered_rps": 400},
        {"name": "GET /ads", "policy": "p", "cluster": "default", "priority": 2, "slo_ms": 80,
         "sustainable_rps": 200, "lower_bound": 1500, "upper_bound": 3000, "offered_rps": 100},
        {"name": "GET /other", "policy": "p", "cluster": "batch", "priority": 3, "slo_ms": 500,
         "sustainable_rps": 100, "lower_bound": 10, "upper_bound": 2000, "offered_rps": 50},
    ]


def random_apis(seed):
    """A small random app, a pure function of ``seed`` (like sim's /reset)."""
    rng = random.Random(seed)
    apis = []
    for i in range(rng.randint(2, 4)):
        sustainable = rng.uniform(100, 800)
        apis.append({"name": f"GET /api{i}", "policy": "p", "cluster": "default",
                     "priority": rng.randint(1, 3), "slo_ms": rng.choice([100, 200, 250]),
                     "sustainable_rps": sustainable, "lower_bound": 10.0,
                     "upper_bound": 2000.0, "offered_rps": sustainable * rng.uniform(0.8, 2.5)})
    return apis


class FakeSpillway:
    """The fake engine. Use as a context manager; ``url`` is its base URL."""

    def __init__(self, apis=None, token=None, episode_ticks=1000, virtual=True):
        self.lock = threading.Lock()
        self.token = token
        self.episode_ticks = episode_ticks
        self.virtual = virtual
        self.requests = []  # (method, path, query dict, body, Authorization header)
        self.fixed_metrics = {}
        self.tick_every_s = None  # set: /apis reports a wall-clock tick count
        self.services = None  # service names: serve /services
        self.overloaded_at = lambda tick: set()
        self._load(apis if apis is not None else default_apis())

    def _load(self, apis):
        self.apis = [dict(a) for a in apis]
        for a in self.apis:
            a.setdefault("mode", "agent")
            a["rate_limit"] = min(a["upper_bound"], max(a["lower_bound"], 1000.0))
        self.tick = 0
        self.done = False

    # -- the toy app --------------------------------------------------------

    def api(self, name):
        for a in self.apis:
            if a["name"] == name:
                return a
        return None

    def metrics_of(self, a):
        if a["name"] in self.fixed_metrics:
            g, lat = self.fixed_metrics[a["name"]]
            return {"goodput": float(g), "latency": float(lat)}
        admitted = min(a["rate_limit"], a["offered_rps"])
        cap = a["sustainable_rps"]
        over = max(0.0, admitted - cap)
        goodput = min(admitted, cap) - 0.5 * over
        latency = a["slo_ms"] * (0.5 + 4.0 * over / cap)
        return {"goodput": max(0.0, goodput), "latency": latency}

    # -- server -------------------------------------------------------------

    def __enter__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, doc=None):
                raw = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(code)
                if doc is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self, method):
                u = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(u.query))
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        return self._send(400, {"error": "body is not JSON"})
                auth = self.headers.get("Authorization")
                with fake.lock:
                    fake.requests.append((method, u.path, query, body, auth))
                    if fake.token and auth != "Bearer " + fake.token:
                        return self._send(401, {"error": "missing or wrong bearer token"})
                    code, doc = fake.route(method, u.path, query, body)
                self._send(code, doc)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def route(self, method, path, query, body):
        if path == "/apis" and method == "GET":
            apis = [dict(a) for a in self.apis]
            if self.tick_every_s:  # an engine ticking on the wall clock
                for a in apis:
                    a["tick"] = int(time.monotonic() / self.tick_every_s)
            return 200, {"apis": apis}
        if path == "/metrics" and method == "GET":
            a = self.api(query.get("method", ""))
            if a is None:
                return 404, {"error": f"unknown api {query.get('method', '')!r}"}
            return 200, self.metrics_of(a)
        if path == "/set_rate" and method == "POST":
            a = self.api(query.get("method", ""))
            if a is None:
                return 404, {"error": f"unknown api {query.get('method', '')!r}"}
            if not isinstance(body, dict) or not isinstance(body.get("rate_limit"), (int, float)):
                return 400, {"error": "want {\"rate_limit\": number}"}
            a["rate_limit"] = min(a["upper_bound"], max(a["lower_bound"], float(body["rate_limit"])))
            return 200, None
        if path == "/services" and method == "GET":
            if self.services is None:
                return 404, {"error": "this backend reports no per-service overload"}
            return 200, {"services": self.service_list()}
        if path == "/step" and method == "POST" and self.virtual:
            if self.done:
                return 409, {"error": "scenario is over; POST /reset to start again"}
            self.tick += 1
            self.done = self.tick >= self.episode_ticks
            per_api = {}
            for a in self.apis:
                m = self.metrics_of(a)
                m.update({"offered_rps": a["offered_rps"], "rate_limit": a["rate_limit"],
                          "mode": a["mode"],
                          "optimal_rps": min(a["offered_rps"], a["sustainable_rps"])})
                per_api[a["name"]] = m
            self.last_step_body = {"tick": self.tick, "time_s": float(self.tick),
                                   "done": self.done, "apis": per_api}
            if self.services is not None:
                self.last_step_body["services"] = self.service_list()
            return 200, self.last_step_body
        if path == "/reset" and method == "POST" and self.virtual:
            seed = (body or {}).get("seed", 0)
            self._load(random_apis(seed))
            return 200, {"apis": [dict(a) for a in self.apis]}
        return 404, {"error": f"no route {method} {path}"}

    def service_list(self):
        hot = self.overloaded_at(self.tick)
        return [{"name": n, "utilisation": 1.0 if n in hot else 0.5,
                 "queueing_ms": 20.0 if n in hot else 0.0, "overloaded": n in hot}
                for n in self.services]

    # -- helpers for assertions ------------------------------------------------

    def calls(self, method=None, path=None):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r[0] == method) and (path is None or r[1] == path)]

    def clear(self):
        with self.lock:
            self.requests.clear()
