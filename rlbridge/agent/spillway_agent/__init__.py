"""Spillway's Python RL agent (the TopFull-style rate controller).

The Go engine exposes its agent-controlled APIs over a small HTTP protocol
(``/apis``, ``/metrics``, ``/set_rate`` and, in the simulator, ``/step`` and
``/reset``). This package talks to it and learns or applies a PPO policy:

- :mod:`spillway_agent.client` - the HTTP client (stdlib only).
- :mod:`spillway_agent.apply` - how one scalar action becomes per-API rates.
- :mod:`spillway_agent.env` - the gymnasium-style environment.
- :mod:`spillway_agent.ppo` - PPO written in numpy, with save/load.
- :mod:`spillway_agent.cli` - ``python -m spillway_agent run|train``.

Only numpy is required at run time.
"""

from .client import SpillwayClient, SpillwayError, SpillwayHTTPError
from .apply import apply_seed, apply_topfull, APPLY_RULES
from .env import SpillwayEnv
from .ppo import PPOAgent, compute_gae

__all__ = [
    "SpillwayClient",
    "SpillwayError",
    "SpillwayHTTPError",
    "apply_seed",
    "apply_topfull",
    "APPLY_RULES",
    "SpillwayEnv",
    "PPOAgent",
    "compute_gae",
]
