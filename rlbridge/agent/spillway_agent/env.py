"""The environment the agent acts in: one cluster of a Spillway engine.

Two observations, picked by ``obs``:

* ``"seed"``, the seed agent's (``RealAppEnv``): ``[goodput ratio, max p95
  latency ms]``, with the reward Δ Σ goodput − rho × (max p95 − the
  cluster's largest SLO, in ms, when positive).
* ``"v2"``, the default for new models (:data:`V2_FEATURES`): goodput over
  what the limits let through, so that slack does not read as failure;
  every API's p95 against its own SLO; how much of the demand the limits
  hold back; and one step of history. Its reward is Δ Σ goodput −
  slo_penalty × Σ sustainable_rps × the worst API's excess of p95 over its
  SLO (a fraction: 1 is twice the SLO).

The action is one relative step in [-0.5, 0.5] either way. Differences from
the seed, all on purpose:

* the API list, priorities, bounds and SLOs come from ``GET /apis`` instead
  of kubectl and a hard-coded table;
* ``reset()`` posts the initial rate to every API, so the server and the
  agent agree on the starting point (the seed only forgot its own copy);
* in lockstep mode (the simulator's ``--virtual`` serve) time advances only
  on ``POST /step``, so an episode runs as fast as the simulator can go;
* a max-steps limit is reported as ``truncated`` and the scenario ending as
  ``terminated``, as gymnasium intends (the seed folded both into one flag).

gymnasium is optional: when importable the class subclasses ``gymnasium.Env``
with ``Box`` spaces, otherwise a tiny stand-in with the same attributes.
"""

import math
import time

import numpy as np

from .apply import ACTION_HIGH, ACTION_LOW, APPLY_RULES, _raise_cap, api_bounds
from .client import SpillwayHTTPError
from .clusters import busy_services

OBS_KINDS = ("seed", "v2")

V2_FEATURES = (
    "served: Σ goodput ÷ Σ min(rate_limit, offered), clipped to [0, 1.5]",
    "worst: log1p(max over APIs of p95 ÷ that API's SLO)",
    "held: 1 − Σ min(rate_limit, offered) ÷ Σ offered (0: the limits hold nothing back)",
    "trend: (Σ goodput − last step's) ÷ max(last step's, 1), clipped to [-1, 1]",
    "the previous step's served",
    "the previous step's worst",
    "the previous step's action ÷ 0.5",
)
"""What each entry of a ``"v2"`` observation is."""

# How fast dynamic clusters raise an API that crosses no overloaded
# service (relax), per step: by a quarter, so that a rate held far below
# its demand does not flood its services in one step. Measured on the
# suite's named apps: 1.5 and 2 gained 0.01-0.02 of optimal with the
# queue guard and lost 0.01-0.07 without it (docs/benchmarks.md, Dynamic
# clusters).
RELAX_GROWTH = 1.25

# How fast a measured cost forgets its minimum, per step: a cost that is
# never seen again at its low doubles in about 35 steps, so an API whose
# work grew is re-ranked within a minute.
COST_DRIFT = 0.02

try:  # optional; everything below works without it
    import gymnasium as _gym
    from gymnasium import spaces as _spaces

    _EnvBase = _gym.Env

    def _box(low, high, shape):
        return _spaces.Box(low=low, high=high, shape=shape, dtype=np.float32)

except ImportError:  # pragma: no cover - depends on the machine
    _gym = None

    class _EnvBase:
        """Stand-in for ``gymnasium.Env`` when gymnasium is not installed."""

        metadata = {}

        def reset(self, seed=None, options=None):
            return None

        def close(self):
            pass

    class _Box:
        """Minimal stand-in for ``gymnasium.spaces.Box`` (bounds, shape, dtype)."""

        def __init__(self, low, high, shape):
            self.low = np.full(shape, low, dtype=np.float32)
            self.high = np.full(shape, high, dtype=np.float32)
            self.shape = tuple(shape)
            self.dtype = np.float32

    def _box(low, high, shape):
        return _Box(low, high, shape)


class SpillwayEnv(_EnvBase):
    """One cluster of APIs behind a Spillway engine, as an RL environment.

    Args:
        client: a :class:`~spillway_agent.client.SpillwayClient`.
        cluster: only APIs whose ``cluster`` equals this; None for all APIs.
        apply: ``"topfull"`` (group cascade) or ``"seed"`` (one API) - see
            :mod:`spillway_agent.apply`.
        max_steps: episode length before ``truncated`` is set; None or 0 for
            no limit (``run`` on a real engine).
        rho: latency penalty weight, reward units per ms above the SLO.
        lockstep: drive a ``spillway sim --serve --virtual`` server with
            ``POST /step`` instead of waiting on the wall clock.
        initial_rate: rate (req/s) posted to every API on reset, clamped into
            each API's bounds.
        reset_seed: in lockstep mode, seed for ``POST /reset`` when reset()
            is called without one; None means do not call /reset at all.
        step_interval_s: wall-clock period of a step when not in lockstep.
        obs: ``"seed"`` or ``"v2"``, the observation and reward (module doc).
        slo_penalty: the v2 reward's weight of the worst SLO excess.

    Training in lock step on apps of several clusters: set
    ``companion_policy`` (a function of an observation and an SLO to an
    action) and leave ``cluster`` None. Each ``reset()`` then learns on one
    cluster of the app, in turn, and drives every other cluster with the
    companion policy (the current model) in the same ``POST /step``, as a
    deployed agent drives them all.

    After ``reset()``: ``apis`` (list of API dicts of the cluster), ``rates``
    (the agent's copy of the rate limits, req/s), ``slo_ms`` (largest SLO of
    the cluster) and ``reward_scale`` (sum of sustainable_rps, used by PPO to
    bring rewards to order 1).
    """

    metadata = {"render_modes": []}

    def __init__(self, client, cluster=None, apply="topfull", max_steps=50, rho=0.01,
                 lockstep=False, initial_rate=1000.0, reset_seed=None, step_interval_s=1.0,
                 obs="seed", slo_penalty=0.005, reward="delta"):
        if apply not in APPLY_RULES:
            raise ValueError(f"apply must be one of {sorted(APPLY_RULES)}, got {apply!r}")
        if obs not in OBS_KINDS:
            raise ValueError(f"obs must be one of {OBS_KINDS}, got {obs!r}")
        self.obs_kind = obs
        self.slo_penalty = float(slo_penalty)
        if reward not in ("delta", "optimal"):
            raise ValueError(f"reward must be delta or optimal, got {reward!r}")
        # "optimal" (training on the simulator only): each step's reward is
        # the cluster's goodput ÷ its optimal admission (the simulator's
        # optimal_rps) − slo_penalty × the worst SLO excess; a level, not a
        # change, on a scale where 1 is the physical limit.
        self.reward_kind = reward
        self.client = client
        self.cluster = cluster
        # The busy services at the last observation (names; see
        # clusters.busy_services), from the simulator's /step answer or GET
        # /services; None when the server reports none (an engine without
        # service signals answers 404).
        self.busy = None
        self._services_absent = False
        self.apply_name = apply
        self._apply = APPLY_RULES[apply]
        self.max_steps = max_steps or None
        self.rho = float(rho)
        self.lockstep = bool(lockstep)
        self.initial_rate = float(initial_rate)
        # Training only: a numpy Generator that draws each API's initial
        # rate log-uniformly within its bounds, so that episodes start from
        # every kind of state, not only from the deployed initial rate.
        self.initial_rate_rng = None
        self.reset_seed = reset_seed
        self.step_interval_s = float(step_interval_s)

        self.observation_space = _box(-np.inf, np.inf, (2 if obs == "seed" else len(V2_FEATURES),))
        self.action_space = _box(ACTION_LOW, ACTION_HIGH, (1,))

        self.apis = []
        self.rates = {}
        self.slo_ms = 0.0
        self.reward_scale = 1.0
        self.current_step = 0
        self.server_done = False
        self._prev_goodput = None
        self._last_obs_time = None
        self._prev_feats = None  # v2: (served, worst) of the last step
        self._last_action = 0.0
        self.costs = {}  # per API: least recent p95 latency, ms (see COST_DRIFT)
        self._latency = {}  # per API: p95 of the last step, ms
        self._goodput = {}  # per API: goodput of the last step, req/s
        self.companion_policy = None
        self.companions = []  # [(env, last obs)] of the other clusters
        self._episodes = 0

    # -- gymnasium API --------------------------------------------------------

    def reset(self, seed=None, options=None):
        """Start an episode; returns ``(observation, info)``.

        In lockstep mode a seed (argument, else ``reset_seed``) first asks the
        simulator for a new randomised episode with ``POST /reset``. Then the
        initial rate is posted to every API of the cluster and, in lockstep
        mode, one tick is stepped so the first observation reflects it.
        """
        if _gym is not None:
            super().reset(seed=seed)
        seed = self.reset_seed if seed is None else seed
        if self.lockstep and seed is not None:
            all_apis = self.client.reset(seed)
        else:
            all_apis = self.client.apis()
            if self.lockstep and not all_apis:
                # A fresh `sim --serve --virtual` has no episode until the
                # first /reset or /step: start one and let the server seed it.
                all_apis = self.client.reset()
        self.companions = []
        if self.companion_policy is not None and self.cluster is None:
            clusters = sorted({str(a.get("cluster")) for a in all_apis})
            mine = clusters[self._episodes % len(clusters)]
            self._episodes += 1
            for c in clusters:
                if c != mine:
                    other = SpillwayEnv(self.client, cluster=c, apply=self.apply_name,
                                        max_steps=None, rho=self.rho, lockstep=True,
                                        initial_rate=self.initial_rate, obs=self.obs_kind,
                                        slo_penalty=self.slo_penalty)
                    other.initial_rate_rng = self.initial_rate_rng
                    other._start(all_apis)
                    self.companions.append([other, None])
            all_apis = [a for a in all_apis if str(a.get("cluster")) == mine]
        self._start(all_apis)
        if options and options.get("defer_observe"):
            return None, {}  # the caller steps, then calls observe_reset
        metrics, tick = self._observe()
        return self._first(metrics, tick)

    def _start(self, all_apis):
        """The part of reset() after the server's episode is chosen: pick
        this env's APIs and post their initial rates."""
        self._select_apis(all_apis)

        self.current_step = 0
        self._prev_goodput = None
        self._prev_feats = None
        self._last_action = 0.0
        self.costs = {}
        self._latency = {}
        self._goodput = {}
        self.server_done = False
        self.rates = {}
        for info in self.apis:
            lo, hi = api_bounds(info)
            rate = min(hi, max(lo, self.initial_rate))
            if self.initial_rate_rng is not None and lo > 0 and hi > lo:
                rate = float(lo * (hi / lo) ** self.initial_rate_rng.random())
            self.client.set_rate(info["name"], rate)
            self.rates[info["name"]] = rate

    def adopt(self, apis, rates, costs):
        """Takes over ``apis`` (dicts of ``GET /apis``) in the middle of a
        run, for a cluster that dynamic clusters formed
        (:mod:`spillway_agent.clusters`): ``rates`` and ``costs`` are the
        run's per-API dicts, shared with the other envs, and no rate is
        posted. The history starts afresh, as after ``reset()``: the next
        observation goes through ``_first``."""
        self.cluster = None
        self._select_apis(apis)
        self.rates = rates
        self.costs = costs
        self.current_step = 0
        self._prev_goodput = None
        self._prev_feats = None
        self._last_action = 0.0
        self._latency = {}
        self._goodput = {}
        self.server_done = False

    def observe_reset(self, body):
        """The rest of ``reset(options={"defer_observe": True})`` from a
        ``POST /step`` answer (lockstep)."""
        return self._first(*self._metrics_from_body(body))

    def _first(self, metrics, tick):
        obs, goodput, latency = self._obs_from(metrics)
        info = self._info(metrics, goodput, latency, obs, tick)
        return obs, info

    def step(self, action):
        """Apply ``action``, wait one tick, and observe.

        Returns ``(obs, reward, terminated, truncated, info)``: terminated when
        the simulator reports its scenario done, truncated at ``max_steps``.
        """
        a = self.act(action)
        metrics, tick = self._observe()
        return self._outcome(a, metrics, tick)

    def act(self, action):
        """Post the rates that ``action`` gives; returns the clipped action.

        ``act`` then ``observe_step`` is ``step`` split in two, so that one
        process can act for several clusters before a single ``POST /step``.
        """
        if not self.apis:
            raise RuntimeError("SpillwayEnv.step() called before reset()")
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0],
                          ACTION_LOW, ACTION_HIGH))
        for info in self.apis:
            name = info["name"]
            if name in self.costs:
                info["cost_ms"] = self.costs[name]
                info["queue_ms"] = max(0.0, self._latency.get(name, 0.0) - self.costs[name])
            if name in self._goodput:
                info["goodput_rps"] = self._goodput[name]
            if self.busy is not None and info.get("services"):
                info["path_clear"] = not (set(info["services"]) & self.busy)
            else:
                info.pop("path_clear", None)
        new_rates = self._apply(self.rates, self.apis, a)
        for info in self.apis:
            name = info["name"]
            lo, hi = api_bounds(info)
            rate = min(hi, max(lo, float(new_rates[name])))  # what the server keeps
            # On the wall clock every step posts every rate: set_rate is the
            # agent's heartbeat, and an unchanged rate must not look like a
            # dead agent. In lock step POST /step is the heartbeat.
            if rate != self.rates[name] or not self.lockstep:
                self.client.set_rate(name, rate)
                self.rates[name] = rate
        self._last_action = a
        return a

    def relax(self):
        """Raises every API's rate towards 1.1 × its offered load, within
        its bounds, by at most :data:`RELAX_GROWTH` × its rate, and posts
        it: what dynamic clusters do to the APIs that cross no overloaded
        service (TopFull raises them freely). Unlike a raise of the action
        rule, it is not capped by the goodput the API delivered: an API
        whose latency a cause other than its services' overload raises
        (a queue at the entry, say) would otherwise sink to its floor.
        Never lowers a rate. Returns the action it stands for, the
        largest raise."""
        for info in self.apis:
            name = info["name"]
            cur = self.rates.get(name, 0.0)
            # At least 1 req/s more, so that a rate of 0 can grow.
            rate = max(cur, min(_raise_cap(info, cur), max(RELAX_GROWTH * cur, cur + 1.0)))
            lo, hi = api_bounds(info)
            rate = min(hi, max(lo, rate))  # what the server keeps
            if rate != self.rates.get(name) or not self.lockstep:
                self.client.set_rate(name, rate)
                self.rates[name] = rate
        self._last_action = ACTION_HIGH
        return ACTION_HIGH

    def observe_step(self, a, body):
        """The rest of ``step`` from a ``POST /step`` answer (lockstep)."""
        metrics, tick = self._metrics_from_body(body)
        return self._outcome(a, metrics, tick)

    def _outcome(self, a, metrics, tick):
        obs, goodput, latency = self._obs_from(metrics)

        delta = 0.0 if self._prev_goodput is None else goodput - self._prev_goodput
        self._prev_goodput = goodput
        if self.obs_kind == "seed":
            penalty = max(0.0, latency - self.slo_ms)
            reward = float(delta - self.rho * penalty)
        elif self.reward_kind == "optimal":
            optimal = sum(m.get("optimal", float("nan")) for m in metrics.values())
            if optimal != optimal:
                raise RuntimeError("reward optimal needs the simulator's optimal_rps in /step")
            level = min(1.5, goodput / optimal) if optimal >= 1.0 else 1.0
            penalty = min(5.0, self._worst_excess(metrics))
            reward = float(level - self.slo_penalty * penalty)
        else:
            penalty = self._worst_excess(metrics)
            reward = float(delta - self.slo_penalty * self.reward_scale * penalty)

        self.current_step += 1
        terminated = bool(self.server_done)
        truncated = bool(self.max_steps is not None and self.current_step >= self.max_steps
                         and not terminated)
        info = self._info(metrics, goodput, latency, obs, tick)
        info["action"] = a
        info["delta_goodput"] = delta
        info["latency_penalty"] = penalty
        return obs, reward, terminated, truncated, info

    def close(self):
        pass

    # -- internals -----------------------------------------------------------

    def _select_apis(self, all_apis):
        if self.cluster is None:
            apis = list(all_apis)
        else:
            apis = [a for a in all_apis if a.get("cluster") == self.cluster]
        if not apis:
            known = sorted({str(a.get("cluster")) for a in all_apis})
            raise ValueError(f"no APIs in cluster {self.cluster!r} (clusters: {known})")
        self.apis = [dict(a) for a in apis]
        self.slo_ms = max(float(a.get("slo_ms", 0.0)) for a in self.apis)
        scale = sum(float(a.get("sustainable_rps", 0.0) or 0.0) for a in self.apis)
        self.reward_scale = scale if scale > 0 else 1.0
        if self.reward_kind == "optimal":
            self.reward_scale = 1.0  # the reward is a ratio already

    def _observe(self):
        """Wait one tick and return ``({name: {goodput, latency}}, tick)``."""
        if self.lockstep:
            for c in self.companions:
                if c[1] is not None:
                    c[0].act(self.companion_policy(c[1], c[0].slo_ms))
            body = self.client.step()
            for c in self.companions:
                env, last = c
                m = env._metrics_from_body(body)
                c[1] = env._first(*m)[0] if last is None else env._outcome(env._last_action, *m)[0]
            return self._metrics_from_body(body)

        if self._last_obs_time is not None:
            wait_s = self._last_obs_time + self.step_interval_s - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
        self._last_obs_time = time.monotonic()
        return self._read_metrics()

    def _read_metrics(self):
        """``({name: {goodput, latency}}, None)`` of the cluster from
        ``GET /metrics`` and ``GET /apis`` (the wall clock's observation)."""
        names = [a["name"] for a in self.apis]
        metrics = {n: self.client.metrics(n) for n in names}
        fresh = {a["name"]: a for a in self.client.apis()}
        for info in self.apis:
            cur = fresh.get(info["name"])
            if cur is not None:
                _refresh(info, cur)
        self._read_services()
        return metrics, None

    def _read_services(self):
        """Sets :attr:`busy` from ``GET /services`` on the wall clock,
        when the cluster's APIs list their services; a 404 (no service
        signals) leaves it None for good."""
        if self._services_absent or not any(a.get("services") for a in self.apis):
            return
        try:
            services = self.client.services()
        except SpillwayHTTPError as e:
            if e.status != 404:
                raise
            self._services_absent = True
            self.busy = None
            return
        self.busy = busy_services(services)

    def _metrics_from_body(self, body):
        """``({name: {goodput, latency}}, tick)`` of the cluster from a /step answer."""
        names = [a["name"] for a in self.apis]
        per_api = body["apis"]
        missing = [n for n in names if n not in per_api]
        if missing:
            raise RuntimeError(f"POST /step: no metrics for {missing}")
        for info in self.apis:  # refresh offered load, mode, server rate
            _refresh(info, per_api[info["name"]])
        self.server_done = bool(body.get("done", False))
        services = body.get("services")
        if isinstance(services, list):
            self.busy = busy_services(services)
        metrics = {n: {"goodput": float(per_api[n].get("goodput", 0.0)),
                       "latency": float(per_api[n].get("latency", 0.0))} for n in names}
        for n in names:
            if "optimal_rps" in per_api[n]:
                metrics[n]["optimal"] = float(per_api[n]["optimal_rps"])
        return metrics, body.get("tick")

    def _obs_from(self, metrics):
        goodput = sum(m["goodput"] for m in metrics.values())
        latency = max((m["latency"] for m in metrics.values()), default=0.0)
        self._measure_costs(metrics)
        if self.obs_kind == "v2":
            return self._obs_v2(metrics, goodput), goodput, latency
        total_rate = sum(self._local_rate(a) for a in self.apis)
        ratio = goodput / total_rate if total_rate > 0 else 0.0
        return np.array([ratio, latency], dtype=np.float32), goodput, latency

    def _local_rate(self, info):
        """The rate this engine's measurements answer to: the agent's rate,
        or, when the API's rate is the fleet's (``global`` in ``GET /apis``:
        a global limit shared through Redis), this engine's share of it, in
        the proportion the engine reports (share ÷ limit in force)."""
        rate = self.rates[info["name"]]
        share = (info.get("global") or {}).get("share")
        limit = info.get("limit_in_force")
        if share is not None and limit:
            return rate * float(share) / float(limit)
        return rate

    def _measure_costs(self, metrics):
        """Each API's cost per request: the least p95 latency seen, drifting
        up by :data:`COST_DRIFT` a step so that it follows a cost that grew.
        Latency is the only per-API cost a bridge reports, and its minimum
        is the part queueing adds least to; the cost rule only needs the
        order of costs and their rough ratios."""
        self._latency = {name: float(m["latency"]) for name, m in metrics.items()}
        self._goodput = {name: float(m["goodput"]) for name, m in metrics.items()}
        for name, m in metrics.items():
            lat = float(m["latency"])
            if not lat > 0 or math.isinf(lat):
                continue  # idle: nothing completed, nothing learned
            prev = self.costs.get(name)
            self.costs[name] = lat if prev is None else min(lat, prev * (1.0 + COST_DRIFT))

    def _worst_ratio(self, metrics):
        """Largest p95 ÷ SLO over the APIs (0 when all are idle)."""
        worst = 0.0
        for info in self.apis:
            slo = float(info.get("slo_ms", 0.0) or 0.0) or self.slo_ms or 1000.0
            worst = max(worst, float(metrics[info["name"]]["latency"]) / slo)
        return worst

    def _worst_excess(self, metrics):
        """Largest (p95 ÷ SLO − 1) over the APIs, 0 when all meet their SLO."""
        return max(0.0, self._worst_ratio(metrics) - 1.0)

    def _obs_v2(self, metrics, goodput):
        """The v2 observation (:data:`V2_FEATURES`)."""
        passed, offered = 0.0, 0.0
        for info in self.apis:
            off = max(0.0, float(info.get("offered_rps", 0.0) or 0.0))
            passed += min(self._local_rate(info), off)
            offered += off
        served = min(1.5, goodput / passed) if passed > 0 else 1.0
        worst = math.log1p(self._worst_ratio(metrics))
        held = 1.0 - passed / offered if offered > 0 else 0.0
        prev_g = self._prev_goodput
        trend = 0.0 if prev_g is None else max(-1.0, min(1.0, (goodput - prev_g) / max(prev_g, 1.0)))
        last = self._prev_feats or (served, worst)
        obs = np.array([served, worst, held, trend, last[0], last[1],
                        self._last_action / ACTION_HIGH], dtype=np.float32)
        self._prev_feats = (served, worst)
        return obs

    def _info(self, metrics, goodput, latency, obs, tick):
        return {
            "goodput": goodput,
            "latency": latency,
            "goodput_ratio": float(obs[0]),
            "rates": dict(self.rates),
            "per_api": metrics,
            "tick": tick,
            "done": self.server_done,
        }


def _refresh(info, cur):
    """Copies the server's latest view of an API into ``info``. ``global``
    is omitted once the API's rate is no longer the fleet's, so its absence
    clears it."""
    for key in ("offered_rps", "rate_limit", "mode", "limit_in_force"):
        if key in cur:
            info[key] = cur[key]
    if "global" in cur:
        info["global"] = cur["global"]
    else:
        info.pop("global", None)
