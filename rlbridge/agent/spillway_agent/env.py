"""The environment the agent acts in: one cluster of a Spillway engine.

Same design as the seed agent (``RealAppEnv``): the observation is
``[goodput ratio, max p95 latency ms]``, the action is one relative step in
[-0.5, 0.5], and the reward is the change in total goodput minus a small
penalty on latency above the SLO. Differences from the seed, all on purpose:

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

import time

import numpy as np

from .apply import ACTION_HIGH, ACTION_LOW, APPLY_RULES, api_bounds

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

    After ``reset()``: ``apis`` (list of API dicts of the cluster), ``rates``
    (the agent's copy of the rate limits, req/s), ``slo_ms`` (largest SLO of
    the cluster) and ``reward_scale`` (sum of sustainable_rps, used by PPO to
    bring rewards to order 1).
    """

    metadata = {"render_modes": []}

    def __init__(self, client, cluster=None, apply="topfull", max_steps=50, rho=0.01,
                 lockstep=False, initial_rate=1000.0, reset_seed=None, step_interval_s=1.0):
        if apply not in APPLY_RULES:
            raise ValueError(f"apply must be one of {sorted(APPLY_RULES)}, got {apply!r}")
        self.client = client
        self.cluster = cluster
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

        self.observation_space = _box(0.0, np.inf, (2,))
        self.action_space = _box(ACTION_LOW, ACTION_HIGH, (1,))

        self.apis = []
        self.rates = {}
        self.slo_ms = 0.0
        self.reward_scale = 1.0
        self.current_step = 0
        self.server_done = False
        self._prev_goodput = None
        self._last_obs_time = None

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
        self._select_apis(all_apis)

        self.current_step = 0
        self._prev_goodput = None
        self.server_done = False
        self.rates = {}
        for info in self.apis:
            lo, hi = api_bounds(info)
            rate = min(hi, max(lo, self.initial_rate))
            if self.initial_rate_rng is not None and lo > 0 and hi > lo:
                rate = float(lo * (hi / lo) ** self.initial_rate_rng.random())
            self.client.set_rate(info["name"], rate)
            self.rates[info["name"]] = rate

        if options and options.get("defer_observe"):
            return None, {}  # the caller steps, then calls observe_reset
        metrics, tick = self._observe()
        return self._first(metrics, tick)

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
        new_rates = self._apply(self.rates, self.apis, a)
        for info in self.apis:
            name = info["name"]
            lo, hi = api_bounds(info)
            rate = min(hi, max(lo, float(new_rates[name])))  # what the server keeps
            if rate != self.rates[name]:
                self.client.set_rate(name, rate)
                self.rates[name] = rate
        return a

    def observe_step(self, a, body):
        """The rest of ``step`` from a ``POST /step`` answer (lockstep)."""
        metrics, tick = self._metrics_from_body(body)
        return self._outcome(a, metrics, tick)

    def _outcome(self, a, metrics, tick):
        obs, goodput, latency = self._obs_from(metrics)

        delta = 0.0 if self._prev_goodput is None else goodput - self._prev_goodput
        self._prev_goodput = goodput
        penalty = max(0.0, latency - self.slo_ms)
        reward = float(delta - self.rho * penalty)

        self.current_step += 1
        terminated = bool(self.server_done)
        truncated = bool(self.max_steps is not None and self.current_step >= self.max_steps
                         and not terminated)
        info = self._info(metrics, goodput, latency, obs, tick)
        info["action"] = a
        info["delta_goodput"] = delta
        info["latency_penalty_ms"] = penalty
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

    def _observe(self):
        """Wait one tick and return ``({name: {goodput, latency}}, tick)``."""
        names = [a["name"] for a in self.apis]
        if self.lockstep:
            return self._metrics_from_body(self.client.step())

        if self._last_obs_time is not None:
            wait_s = self._last_obs_time + self.step_interval_s - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
        self._last_obs_time = time.monotonic()
        metrics = {n: self.client.metrics(n) for n in names}
        fresh = {a["name"]: a for a in self.client.apis()}
        for info in self.apis:
            cur = fresh.get(info["name"])
            if cur is not None:
                for key in ("offered_rps", "rate_limit", "mode"):
                    if key in cur:
                        info[key] = cur[key]
        return metrics, None

    def _metrics_from_body(self, body):
        """``({name: {goodput, latency}}, tick)`` of the cluster from a /step answer."""
        names = [a["name"] for a in self.apis]
        per_api = body["apis"]
        missing = [n for n in names if n not in per_api]
        if missing:
            raise RuntimeError(f"POST /step: no metrics for {missing}")
        for info in self.apis:  # refresh offered load, mode, server rate
            for key in ("offered_rps", "rate_limit", "mode"):
                if key in per_api[info["name"]]:
                    info[key] = per_api[info["name"]][key]
        self.server_done = bool(body.get("done", False))
        metrics = {n: {"goodput": float(per_api[n].get("goodput", 0.0)),
                       "latency": float(per_api[n].get("latency", 0.0))} for n in names}
        return metrics, body.get("tick")

    def _obs_from(self, metrics):
        goodput = sum(m["goodput"] for m in metrics.values())
        latency = max((m["latency"] for m in metrics.values()), default=0.0)
        total_rate = sum(self.rates[a["name"]] for a in self.apis)
        ratio = goodput / total_rate if total_rate > 0 else 0.0
        return np.array([ratio, latency], dtype=np.float32), goodput, latency

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

