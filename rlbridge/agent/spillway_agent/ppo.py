"""Proximal Policy Optimisation in plain numpy.

The model is small enough (two 2->64->64->1 MLPs) that numpy is fast enough
and avoids a torch dependency on the machines that run the engine.

* Policy: tanh MLP giving the mean of a Gaussian over the action, with a
  learned, state-independent ``log_std``. The Gaussian is sampled without a
  tanh squashing; the env gets the sample clipped to [-0.5, 0.5], while the
  log-probability is of the unclipped sample (as SB3 does).
* Value: a separate tanh MLP of the same shape.
* Inputs: with ``features.obs == "seed"`` they are computed from the seed's
  raw observation inside the model: ``[clip(goodput_ratio, 0, 2),
  log1p(latency_ms / slo_ms)]``, the SLO being the cluster's largest
  ``slo_ms``, passed in at act time. A ``"v2"`` observation (env.V2_FEATURES)
  is scale-free already and goes in as it is. Either way one model
  transfers between apps with different SLOs.
* Rewards are divided by ``env.reward_scale`` (the cluster's summed
  ``sustainable_rps``) during training only. That turns "delta goodput in
  req/s" into "delta goodput as a fraction of capacity", which keeps value
  targets near order 1 across apps of very different sizes; a fixed,
  per-episode constant is used rather than a running std so training stays
  exactly reproducible and nothing has to be carried into the saved model.
* Training: GAE(lambda), clipped surrogate objective, per-minibatch advantage
  normalisation, squared-error value loss, global gradient-norm clipping and
  Adam - all hand-written below.

Saved models are JSON (``.json``) or numpy archives (``.npz``); see
:meth:`PPOAgent.save` for the layout. Both round-trip float64 weights exactly.
"""

import json
import math
import os
import time

import numpy as np

from .apply import ACTION_HIGH, ACTION_LOW
from .env import V2_FEATURES

MODEL_FORMAT = "spillway-ppo"
# Version 2 adds features.obs ("seed" or "v2"); a version 1 file is "seed".
MODEL_VERSION = 2
READABLE_VERSIONS = (1, 2)

# Defaults follow the TopFull checkpoint (SB3 PPO) where it has a value.
DEFAULT_HYPERPARAMETERS = {
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.3,
    "n_steps": 1024,
    "batch_size": 128,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_eps": 1e-5,
    "log_std_init": -1.0,
    "normalize_advantage": True,
}

# Feature constants, stored in every model file.
DEFAULT_FEATURES = {
    "ratio_clip_max": 2.0,  # goodput ratio is clipped to [0, this]
    "default_slo_ms": 100.0,  # used only when no SLO is given at act time
}

_LOG_2PI = math.log(2.0 * math.pi)


# -- small building blocks --------------------------------------------------


def _orthogonal(rng, n_in, n_out, gain):
    """An (n_in, n_out) matrix with orthonormal rows or columns, times gain."""
    a = rng.standard_normal((max(n_in, n_out), min(n_in, n_out)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if n_in < n_out:
        q = q.T
    return np.ascontiguousarray(gain * q[:n_in, :n_out])


def _init_mlp(rng, sizes, out_gain):
    """Layers ``[[W (in, out), b (out,)], ...]``; hidden gain sqrt(2)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        gain = out_gain if i == len(sizes) - 2 else math.sqrt(2.0)
        layers.append([_orthogonal(rng, n_in, n_out, gain), np.zeros(n_out)])
    return layers


def _mlp_forward(layers, x):
    """Forward pass with tanh on hidden layers and a linear output.

    Returns (output, activations) where activations[i] is the input of layer
    i and activations[-1] the output; the backward pass needs them.
    """
    acts = [x]
    h = x
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        z = h @ w + b
        h = np.tanh(z) if i < last else z
        acts.append(h)
    return h, acts


def _mlp_backward(layers, acts, d_out):
    """Gradients ``[[dW, db], ...]`` of a scalar loss given d loss / d output."""
    grads = [None] * len(layers)
    d = d_out
    last = len(layers) - 1
    for i in range(last, -1, -1):
        if i < last:
            d = d * (1.0 - acts[i + 1] ** 2)  # through tanh
        w = layers[i][0]
        grads[i] = [acts[i].T @ d, d.sum(axis=0)]
        if i > 0:
            d = d @ w.T
    return grads


class Adam:
    """Adam over a fixed list of numpy arrays, updated in place."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params = params
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def compute_gae(rewards, values, next_values, terminated, ended, gamma, lam):
    """Generalised advantage estimation over one rollout.

    Args:
        rewards[t]: reward after the action at t.
        values[t]: V(s_t).
        next_values[t]: V(s_{t+1}), the state the action led to (for the last
            step of the rollout, or a truncated episode, the bootstrap value).
        terminated[t]: True if s_{t+1} is terminal (no future reward).
        ended[t]: True if the episode stopped after t for any reason
            (terminated or truncated), so advantages do not leak across it.

    Returns (advantages, returns) with returns = advantages + values.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    next_values = np.asarray(next_values, dtype=np.float64)
    not_terminal = 1.0 - np.asarray(terminated, dtype=np.float64)
    not_ended = 1.0 - np.asarray(ended, dtype=np.float64)
    adv = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        delta = rewards[t] + gamma * next_values[t] * not_terminal[t] - values[t]
        running = delta + gamma * lam * not_ended[t] * running
        adv[t] = running
    return adv, adv + values


# -- the agent ---------------------------------------------------------------


class PPOAgent:
    """Gaussian MLP policy plus value function, trained with PPO.

    Args:
        seed: seeds ``np.random.default_rng`` for weight init, action noise
            and minibatch shuffling, so training is reproducible.
        hidden_sizes: hidden layer widths of both networks.
        hyperparameters: overrides of :data:`DEFAULT_HYPERPARAMETERS`.
        features: overrides of :data:`DEFAULT_FEATURES`.
    """

    act_dim = 1

    def __init__(self, seed=0, hidden_sizes=(64, 64), hyperparameters=None, features=None):
        self.hp = dict(DEFAULT_HYPERPARAMETERS)
        self.hp.update(hyperparameters or {})
        self.features_cfg = dict(DEFAULT_FEATURES)
        self.features_cfg.update(features or {})
        self.obs_kind = self.features_cfg.get("obs", "seed")
        if self.obs_kind not in ("seed", "v2"):
            raise ValueError(f"features.obs {self.obs_kind!r}: want seed or v2")
        self.obs_dim = 2 if self.obs_kind == "seed" else len(V2_FEATURES)
        self.hidden_sizes = [int(h) for h in hidden_sizes]
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        sizes = [self.obs_dim] + self.hidden_sizes + [self.act_dim]
        self.pi_layers = _init_mlp(self.rng, sizes, out_gain=0.01)
        self.log_std = np.full(self.act_dim, float(self.hp["log_std_init"]))
        self.v_layers = _init_mlp(self.rng, [self.obs_dim] + self.hidden_sizes + [1], out_gain=1.0)
        self.meta = {}
        self._optimizer = None

    # -- parameters -----------------------------------------------------------

    def parameters(self):
        """Every trainable array, in a fixed order (policy, log_std, value)."""
        ps = []
        for w, b in self.pi_layers:
            ps += [w, b]
        ps.append(self.log_std)
        for w, b in self.v_layers:
            ps += [w, b]
        return ps

    def _optim(self):
        if self._optimizer is None:
            self._optimizer = Adam(self.parameters(), lr=self.hp["learning_rate"],
                                   beta1=self.hp["adam_beta1"], beta2=self.hp["adam_beta2"],
                                   eps=self.hp["adam_eps"])
        return self._optimizer

    # -- acting ----------------------------------------------------------------

    def features(self, obs, slo_ms=None):
        """Model inputs from raw observations ``[goodput_ratio, latency_ms]``.

        ``obs`` may be one observation (shape (2,)) or a batch (N, 2).
        """
        obs = np.asarray(obs, dtype=np.float64)
        single = obs.ndim == 1
        obs = obs.reshape(-1, self.obs_dim)
        if self.obs_kind == "v2":  # the env computed the features already
            f = np.nan_to_num(obs, nan=0.0, posinf=10.0, neginf=-10.0)
            return f[0] if single else f
        slo = float(slo_ms) if slo_ms else float(self.features_cfg["default_slo_ms"])
        ratio = np.clip(obs[:, 0], 0.0, float(self.features_cfg["ratio_clip_max"]))
        lat = np.log1p(np.maximum(obs[:, 1], 0.0) / slo)
        f = np.stack([ratio, lat], axis=1)
        return f[0] if single else f

    def mean_action(self, feats):
        out, _ = _mlp_forward(self.pi_layers, np.atleast_2d(feats))
        return out

    def value(self, feats):
        out, _ = _mlp_forward(self.v_layers, np.atleast_2d(feats))
        return out[:, 0]

    def act(self, feats):
        """Sample for training: returns (env_action, raw_action, logp, value).

        ``env_action`` is the raw Gaussian sample clipped to [-0.5, 0.5].
        """
        feats = np.atleast_2d(feats)
        mean = self.mean_action(feats)[0]
        std = np.exp(self.log_std)
        raw = mean + std * self.rng.standard_normal(self.act_dim)
        logp = float(_gauss_logp(raw[None, :], mean[None, :], self.log_std)[0])
        value = float(self.value(feats)[0])
        return np.clip(raw, ACTION_LOW, ACTION_HIGH), raw, logp, value

    def predict(self, obs, slo_ms=None, deterministic=True):
        """Action for the env from a raw observation (shape (1,), float64).

        Deterministic: the Gaussian mean, clipped; otherwise a clipped sample.
        """
        feats = self.features(obs, slo_ms)
        mean = self.mean_action(feats)[0]
        if deterministic:
            a = mean
        else:
            a = mean + np.exp(self.log_std) * self.rng.standard_normal(self.act_dim)
        return np.clip(a, ACTION_LOW, ACTION_HIGH)

    # -- learning ---------------------------------------------------------------

    def loss_and_grads(self, feats, actions, logp_old, advantages, returns):
        """PPO loss on one minibatch and its gradient per :meth:`parameters`.

        Returns (loss, grads, stats). Advantages are used as given (normalise
        them before calling if wanted).
        """
        n = feats.shape[0]
        clip = self.hp["clip_range"]
        mean, pi_acts = _mlp_forward(self.pi_layers, feats)
        var = np.exp(2.0 * self.log_std)
        logp = _gauss_logp(actions, mean, self.log_std)
        ratio = np.exp(logp - logp_old)
        unclipped = ratio * advantages
        clipped = np.clip(ratio, 1.0 - clip, 1.0 + clip) * advantages
        pg_loss = -np.mean(np.minimum(unclipped, clipped))
        entropy = float(np.sum(self.log_std) + 0.5 * self.act_dim * (1.0 + _LOG_2PI))

        v, v_acts = _mlp_forward(self.v_layers, feats)
        v = v[:, 0]
        v_loss = np.mean((v - returns) ** 2)
        loss = pg_loss - self.hp["ent_coef"] * entropy + self.hp["vf_coef"] * v_loss

        # d loss / d logp: only samples whose unclipped term is the minimum
        # pass gradient (outside the clip range the clipped term is constant).
        active = (unclipped <= clipped).astype(np.float64)
        d_logp = -active * advantages * ratio / n
        diff = actions - mean
        d_mean = d_logp[:, None] * diff / var
        d_log_std = np.sum(d_logp[:, None] * (diff ** 2 / var - 1.0), axis=0)
        d_log_std = d_log_std - self.hp["ent_coef"]
        d_v = (self.hp["vf_coef"] * 2.0 / n) * (v - returns)

        grads = []
        for gw, gb in _mlp_backward(self.pi_layers, pi_acts, d_mean):
            grads += [gw, gb]
        grads.append(d_log_std)
        for gw, gb in _mlp_backward(self.v_layers, v_acts, d_v[:, None]):
            grads += [gw, gb]

        log_ratio = logp - logp_old
        stats = {
            "policy_loss": float(pg_loss),
            "value_loss": float(v_loss),
            "entropy": entropy,
            "approx_kl": float(np.mean(ratio - 1.0 - log_ratio)),
            "clip_fraction": float(np.mean(np.abs(ratio - 1.0) > clip)),
        }
        return float(loss), grads, stats

    def update(self, feats, actions, logp_old, advantages, returns):
        """Run ``n_epochs`` of minibatch PPO on one rollout; returns mean stats."""
        feats = np.asarray(feats, dtype=np.float64)
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, self.act_dim)
        logp_old = np.asarray(logp_old, dtype=np.float64)
        advantages = np.asarray(advantages, dtype=np.float64)
        returns = np.asarray(returns, dtype=np.float64)
        n = feats.shape[0]
        bs = max(1, min(int(self.hp["batch_size"]), n))
        opt = self._optim()
        max_norm = float(self.hp["max_grad_norm"])
        totals = {}
        count = 0
        for _ in range(int(self.hp["n_epochs"])):
            perm = self.rng.permutation(n)
            for start in range(0, n, bs):
                idx = perm[start:start + bs]
                adv = advantages[idx]
                if self.hp["normalize_advantage"] and len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                _, grads, stats = self.loss_and_grads(feats[idx], actions[idx], logp_old[idx],
                                                      adv, returns[idx])
                if max_norm > 0:
                    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
                    if norm > max_norm:
                        scale = max_norm / (norm + 1e-6)
                        grads = [g * scale for g in grads]
                opt.step(grads)
                for k, val in stats.items():
                    totals[k] = totals.get(k, 0.0) + val
                count += 1
        out = {k: val / max(1, count) for k, val in totals.items()}
        out["std"] = float(np.exp(self.log_std).mean())
        return out

    # -- persistence --------------------------------------------------------------

    def _header(self):
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden_sizes": list(self.hidden_sizes),
            "activation": "tanh",
            "action_low": ACTION_LOW,
            "action_high": ACTION_HIGH,
            "features": dict(self.features_cfg),
            "reward_scale": "sum_sustainable_rps",
            "hyperparameters": dict(self.hp),
            "seed": self.seed,
            "meta": dict(self.meta),
        }

    def to_dict(self):
        """The JSON model document (see README for the field list)."""
        doc = self._header()
        doc["policy"] = {
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in self.pi_layers],
            "log_std": self.log_std.tolist(),
        }
        doc["value"] = {
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in self.v_layers],
        }
        return doc

    def save(self, path):
        """Write the model to ``path``; ``.npz`` gives a numpy archive, anything
        else JSON. The file is written to a temporary name and renamed, so a
        reader never sees half a model."""
        tmp = path + ".tmp"
        if path.endswith(".npz"):
            arrays = {"header": np.array(json.dumps(self._header()))}
            for i, (w, b) in enumerate(self.pi_layers):
                arrays[f"policy_w{i}"] = w
                arrays[f"policy_b{i}"] = b
            arrays["policy_log_std"] = self.log_std
            for i, (w, b) in enumerate(self.v_layers):
                arrays[f"value_w{i}"] = w
                arrays[f"value_b{i}"] = b
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f)
                f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, doc, seed=None):
        _check_header(doc)
        agent = cls(seed=doc.get("seed", 0) if seed is None else seed,
                    hidden_sizes=doc["hidden_sizes"],
                    hyperparameters=doc.get("hyperparameters"), features=doc.get("features"))
        agent.pi_layers = [[np.array(l["weight"], dtype=np.float64),
                            np.array(l["bias"], dtype=np.float64)] for l in doc["policy"]["layers"]]
        agent.log_std = np.array(doc["policy"]["log_std"], dtype=np.float64)
        agent.v_layers = [[np.array(l["weight"], dtype=np.float64),
                           np.array(l["bias"], dtype=np.float64)] for l in doc["value"]["layers"]]
        agent.meta = dict(doc.get("meta", {}))
        agent._check_shapes()
        return agent

    @classmethod
    def load(cls, path, seed=None):
        """Read a model written by :meth:`save` (format picked by extension)."""
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                _check_header(header)
                n_pi = len(header["hidden_sizes"]) + 1
                doc = dict(header)
                doc["policy"] = {
                    "layers": [{"weight": z[f"policy_w{i}"], "bias": z[f"policy_b{i}"]}
                               for i in range(n_pi)],
                    "log_std": z["policy_log_std"],
                }
                doc["value"] = {
                    "layers": [{"weight": z[f"value_w{i}"], "bias": z[f"value_b{i}"]}
                               for i in range(n_pi)],
                }
                return cls.from_dict(doc, seed=seed)
        if path.endswith(".zip"):
            raise ValueError(f"{path}: .zip is an SB3 model; use --algo sb3")
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
        return cls.from_dict(doc, seed=seed)

    def _check_shapes(self):
        sizes = [self.obs_dim] + self.hidden_sizes + [self.act_dim]
        for name, layers, out in (("policy", self.pi_layers, self.act_dim),
                                  ("value", self.v_layers, 1)):
            want = sizes[:-1] + [out]
            if len(layers) != len(want) - 1:
                raise ValueError(f"model {name}: {len(layers)} layers, want {len(want) - 1}")
            for i, (w, b) in enumerate(layers):
                if w.shape != (want[i], want[i + 1]) or b.shape != (want[i + 1],):
                    raise ValueError(f"model {name} layer {i}: weight {w.shape} bias {b.shape}, "
                                     f"want {(want[i], want[i + 1])} and {(want[i + 1],)}")
        if self.log_std.shape != (self.act_dim,):
            raise ValueError(f"model log_std shape {self.log_std.shape}, want ({self.act_dim},)")


def _check_header(doc):
    if doc.get("format") != MODEL_FORMAT:
        raise ValueError(f"not a {MODEL_FORMAT} model (format={doc.get('format')!r})")
    if doc.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"unsupported model version {doc.get('version')!r}")


def _gauss_logp(actions, mean, log_std):
    """Log density of a diagonal Gaussian, summed over action dimensions."""
    z = (actions - mean) / np.exp(log_std)
    return np.sum(-0.5 * z * z - log_std - 0.5 * _LOG_2PI, axis=1)


# -- training and evaluation loops ----------------------------------------------


def evaluate(agent, env, seeds):
    """Run one deterministic episode per seed; returns mean reward and ratio.

    ``env`` must end its episodes (max_steps or the server's done). The mean
    goodput ratio is over all steps of all episodes.
    """
    ep_rewards = []
    ratios = []
    randomized, env.initial_rate_rng = getattr(env, "initial_rate_rng", None), None
    try:
        return _evaluate(agent, env, seeds, ep_rewards, ratios)
    finally:
        env.initial_rate_rng = randomized


def _evaluate(agent, env, seeds, ep_rewards, ratios):
    """evaluate()'s episodes, from the deployed initial rates."""
    for s in seeds:
        obs, _ = env.reset(seed=s)
        total = 0.0
        while True:
            action = agent.predict(obs, env.slo_ms, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            ratios.append(float(info.get("goodput_ratio", obs[0])))
            if terminated or truncated:
                break
        ep_rewards.append(total)
    return {
        "mean_reward": float(np.mean(ep_rewards)) if ep_rewards else 0.0,
        "mean_goodput_ratio": float(np.mean(ratios)) if ratios else 0.0,
        "episodes": len(ep_rewards),
    }


def train(agent, env, total_steps, episode_seeds, eval_fn=None, eval_every=0,
          log=print, on_eval=None, shaping=True):
    """Train ``agent`` on ``env`` for at least ``total_steps`` env steps.

    Steps are collected in rollouts of ``n_steps`` (rounded up to whole
    rollouts); episodes run across rollout boundaries. ``episode_seeds`` is an
    iterator giving the seed of each new episode (None is fine for envs that
    ignore it). Every ``eval_every`` updates, and after the last one, calls
    ``eval_fn(agent)`` and then ``on_eval(result, update, steps)``; since an
    evaluation may reuse the same server, the training episode restarts
    afterwards.

    With ``shaping`` the learner adds the potential-based term
    G_t - gamma * G_{t+1} to each reward, where G is the cluster's total
    goodput after a step (``info["goodput"]``); the env's own reward, which
    the logs report, is unchanged. The seed's reward, dGoodput - rho * penalty,
    telescopes over an episode, so its return is -G_t plus
    (1 - gamma) x the discounted future goodput: the part a policy can change
    is 100 times smaller than a term it cannot, which the value net cannot
    predict from the observation (it sees goodput / rate, not goodput). The
    shaped reward (1 - gamma) G_{t+1} - rho * penalty has the same optimal
    policy (shaping with the potential -G, Ng, Harada and Russell 1999) and
    none of that noise.

    Returns a list of per-update dicts (steps, mean_episode_reward, stats).
    """
    if getattr(env, "reward_kind", "delta") == "optimal":
        shaping = False  # a level reward has no -G_0 term to remove
    n_steps = int(agent.hp["n_steps"])
    n_updates = max(1, -(-int(total_steps) // n_steps))
    gamma = agent.hp["gamma"]
    lam = agent.hp["gae_lambda"]
    start = time.monotonic()
    history = []
    recent = []  # raw rewards of recently finished episodes
    steps_done = 0
    steps_before = int(agent.meta.get("trained_steps", 0))

    obs, info = env.reset(seed=next(episode_seeds))
    goodput_before = float(info.get("goodput", 0.0))
    ep_reward = 0.0
    for update in range(1, n_updates + 1):
        feats = np.zeros((n_steps, agent.obs_dim))
        actions = np.zeros((n_steps, agent.act_dim))
        logps = np.zeros(n_steps)
        values = np.zeros(n_steps)
        rewards = np.zeros(n_steps)
        next_values = np.zeros(n_steps)
        terminated = np.zeros(n_steps, dtype=bool)
        ended = np.zeros(n_steps, dtype=bool)
        finished = []
        for t in range(n_steps):
            f = agent.features(obs, env.slo_ms)
            env_action, raw, logp, v = agent.act(f)
            obs, reward, term, trunc, info = env.step(env_action)
            feats[t], actions[t], logps[t], values[t] = f, raw, logp, v
            goodput = float(info.get("goodput", 0.0))
            learned = reward + (goodput_before - gamma * goodput if shaping else 0.0)
            goodput_before = goodput
            rewards[t] = learned / env.reward_scale
            terminated[t] = term
            ended[t] = term or trunc
            ep_reward += reward
            if t > 0 and not ended[t - 1]:
                next_values[t - 1] = v
            if ended[t]:
                if trunc and not term:  # time limit: bootstrap from where it stopped
                    next_values[t] = float(agent.value(agent.features(obs, env.slo_ms))[0])
                finished.append(ep_reward)
                ep_reward = 0.0
                obs, info = env.reset(seed=next(episode_seeds))
                goodput_before = float(info.get("goodput", 0.0))
        if not ended[-1]:
            next_values[-1] = float(agent.value(agent.features(obs, env.slo_ms))[0])
        steps_done += n_steps
        agent.meta["trained_steps"] = steps_before + steps_done

        adv, rets = compute_gae(rewards, values, next_values, terminated, ended, gamma, lam)
        stats = agent.update(feats, actions, logps, adv, rets)

        recent = (recent + finished)[-20:]
        mean_ep = float(np.mean(finished)) if finished else (
            float(np.mean(recent)) if recent else float("nan"))
        row = {"update": update, "steps": steps_done, "episodes": len(finished),
               "mean_episode_reward": mean_ep, "elapsed_s": time.monotonic() - start}
        row.update(stats)
        history.append(row)
        if log:
            log(f"update {update}/{n_updates}  steps {steps_done}  episodes {len(finished)}  "
                f"mean_ep_reward {mean_ep:.3f}  std {stats['std']:.3f}  "
                f"kl {stats['approx_kl']:.4f}  clip {stats['clip_fraction']:.3f}  "
                f"elapsed {row['elapsed_s']:.1f}s")

        if eval_fn is not None and ((eval_every and update % eval_every == 0)
                                    or update == n_updates):
            result = eval_fn(agent)
            row["eval"] = result
            if on_eval is not None:
                on_eval(result, update, steps_done)
            if update < n_updates:
                obs, info = env.reset(seed=next(episode_seeds))
                goodput_before = float(info.get("goodput", 0.0))
                ep_reward = 0.0
    return history
