"""The numpy PPO: GAE, gradients, save/load, and learning on a toy task."""

import os
import random
import sys
import tempfile
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spillway_agent.ppo import PPOAgent, compute_gae, evaluate, train  # noqa: E402


class ToyRateEnv:
    """A one-API overload toy with the same observation as SpillwayEnv.

    Capacity is 1 (normalised req/s). The agent scales its rate by (1 + a).
    Below capacity everything admitted is goodput and latency is half the
    SLO; above it goodput collapses and latency climbs. Reward = goodput, so
    the best policy holds the rate near capacity. Pure Python, no HTTP.
    """

    slo_ms = 100.0
    reward_scale = 1.0

    def __init__(self, max_steps=20):
        self.max_steps = max_steps

    def reset(self, seed=None):
        self.rng = random.Random(seed)
        self.rate = self.rng.uniform(0.3, 2.5)
        self.t = 0
        return self._obs()[0], {}

    def _obs(self):
        over = max(0.0, self.rate - 1.0)
        goodput = self.rate if over == 0 else max(0.0, 1.0 - 0.5 * over)
        latency = 50.0 + 400.0 * over
        return np.array([goodput / self.rate, latency], dtype=np.float32), goodput

    def step(self, action):
        a = float(np.clip(np.asarray(action).reshape(-1)[0], -0.5, 0.5))
        self.rate = min(5.0, max(0.05, self.rate * (1.0 + a)))
        self.t += 1
        obs, goodput = self._obs()
        return obs, goodput, False, self.t >= self.max_steps, {"goodput_ratio": float(obs[0])}


def seeds(start):
    s = start
    while True:
        yield s
        s += 1


class GAETest(unittest.TestCase):
    def test_hand_computed_with_truncated_end(self):
        adv, ret = compute_gae(rewards=[1.0, 0.0, 2.0], values=[0.5, 0.4, 0.3],
                               next_values=[0.4, 0.3, 0.6], terminated=[False] * 3,
                               ended=[False, False, True], gamma=0.9, lam=0.8)
        # t=2: 2 + 0.9*0.6 - 0.3 = 2.24
        # t=1: 0 + 0.9*0.3 - 0.4 + 0.72*2.24 = 1.4828
        # t=0: 1 + 0.9*0.4 - 0.5 + 0.72*1.4828 = 1.927616
        np.testing.assert_allclose(adv, [1.927616, 1.4828, 2.24], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ret, [2.427616, 1.8828, 2.54], rtol=0, atol=1e-12)

    def test_termination_cuts_bootstrap_and_carry(self):
        adv, ret = compute_gae(rewards=[1.0, 2.0, 3.0], values=[1.0, 1.0, 1.0],
                               next_values=[1.0, 99.0, 2.0], terminated=[False, True, False],
                               ended=[False, True, False], gamma=0.5, lam=0.5)
        # t=2: 3 + 0.5*2 - 1 = 3;  t=1: 2 - 1 = 1 (terminal, no carry from t=2)
        # t=0: 1 + 0.5*1 - 1 + 0.25*1 = 0.75
        np.testing.assert_allclose(adv, [0.75, 1.0, 3.0], atol=1e-12)
        np.testing.assert_allclose(ret, [1.75, 2.0, 4.0], atol=1e-12)


class GradientTest(unittest.TestCase):
    def test_analytic_gradient_matches_finite_differences(self):
        agent = PPOAgent(seed=3, hidden_sizes=(5, 4), hyperparameters={"ent_coef": 0.01})
        rng = np.random.default_rng(0)
        for layers in (agent.pi_layers, agent.v_layers):  # move off the init
            for w, b in layers:
                w += rng.normal(0, 0.3, w.shape)
                b += rng.normal(0, 0.3, b.shape)
        n = 12
        feats = rng.normal(size=(n, 2))
        actions = rng.normal(0, 0.4, size=(n, 1))
        adv = rng.normal(size=n)
        rets = rng.normal(size=n)
        # old log-probs chosen so some ratios are inside and some outside the clip range
        mean = agent.mean_action(feats)
        std = np.exp(agent.log_std)
        logp_now = np.sum(-0.5 * ((actions - mean) / std) ** 2 - agent.log_std
                          - 0.5 * np.log(2 * np.pi), axis=1)
        logp_old = logp_now + rng.choice([-0.8, -0.05, 0.0, 0.05, 0.8], size=n)

        _, grads, _ = agent.loss_and_grads(feats, actions, logp_old, adv, rets)
        params = agent.parameters()
        eps = 1e-6
        checked = 0
        for p, g in zip(params, grads):
            flat_p, flat_g = p.reshape(-1), g.reshape(-1)
            for i in range(0, flat_p.size, max(1, flat_p.size // 4)):
                old = flat_p[i]
                flat_p[i] = old + eps
                lp, _, _ = agent.loss_and_grads(feats, actions, logp_old, adv, rets)
                flat_p[i] = old - eps
                lm, _, _ = agent.loss_and_grads(feats, actions, logp_old, adv, rets)
                flat_p[i] = old
                self.assertAlmostEqual(flat_g[i], (lp - lm) / (2 * eps), places=5)
                checked += 1
        self.assertGreater(checked, 20)


class SaveLoadTest(unittest.TestCase):
    def _trained_agent(self):
        agent = PPOAgent(seed=11, hyperparameters={"n_steps": 128, "batch_size": 32,
                                                   "n_epochs": 2})
        train(agent, ToyRateEnv(), 256, seeds(0), log=None)
        return agent

    def test_round_trip_gives_identical_actions(self):
        agent = self._trained_agent()
        grid = [np.array([r, lat], dtype=np.float32)
                for r in (0.0, 0.37, 0.9, 1.0, 1.7, 3.0) for lat in (0.0, 12.5, 99.0, 250.0, 4000.0)]
        want = [agent.predict(o, 120.0) for o in grid]
        self.assertGreater(len({float(w[0]) for w in want}), 5)  # not a constant policy
        with tempfile.TemporaryDirectory() as d:
            for ext in ("json", "npz"):
                path = os.path.join(d, "m." + ext)
                agent.save(path)
                back = PPOAgent.load(path)
                got = [back.predict(o, 120.0) for o in grid]
                for w, g in zip(want, got):
                    self.assertEqual(w.tobytes(), g.tobytes(), ext)
                self.assertEqual(back.hp, agent.hp)
                self.assertEqual(back.features_cfg, agent.features_cfg)
                np.testing.assert_array_equal(back.log_std, agent.log_std)
                for (w1, b1), (w2, b2) in zip(agent.v_layers, back.v_layers):
                    np.testing.assert_array_equal(w1, w2)
                    np.testing.assert_array_equal(b1, b2)
                self.assertEqual(back.meta["trained_steps"], 256)

    def test_load_rejects_other_files(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.json")
            with open(path, "w") as f:
                f.write('{"format": "something-else"}')
            with self.assertRaisesRegex(ValueError, "not a spillway-ppo model"):
                PPOAgent.load(path)

    def test_features(self):
        agent = PPOAgent(seed=0)
        f = agent.features(np.array([3.0, 300.0]), slo_ms=100.0)
        np.testing.assert_allclose(f, [2.0, np.log(4.0)])
        f = agent.features(np.array([[-1.0, 0.0], [0.5, 100.0]]), slo_ms=200.0)
        np.testing.assert_allclose(f, [[0.0, 0.0], [0.5, np.log(1.5)]])


class LearningTest(unittest.TestCase):
    def test_training_is_reproducible_and_improves_toy_return(self):
        # Default hyperparameters (n_steps 1024, lr 3e-4, 10 epochs, batch 128).
        eval_seeds = list(range(1000, 1020))
        started = time.monotonic()
        agent = PPOAgent(seed=42)
        before = evaluate(agent, ToyRateEnv(), eval_seeds)["mean_reward"]
        history = train(agent, ToyRateEnv(), 12 * 1024, seeds(0), log=None)
        after = evaluate(agent, ToyRateEnv(), eval_seeds)["mean_reward"]
        elapsed = time.monotonic() - started

        # 20 steps per episode, reward <= 1 per step. The untrained policy's
        # mean is ~0, i.e. it leaves the random start rate alone (~13.5).
        self.assertGreater(after, before + 3.0, f"before {before:.2f} after {after:.2f}")
        self.assertGreater(after, 16.5)
        # the sampled training episodes improve too (first rollout ~8.5)
        first = history[0]["mean_episode_reward"]
        last = history[-1]["mean_episode_reward"]
        self.assertGreater(last, first + 5.0, f"first {first:.2f} last {last:.2f}")
        self.assertLess(elapsed, 30.0)

        twin = PPOAgent(seed=42, hyperparameters={"n_steps": 512})
        train(twin, ToyRateEnv(), 1024, seeds(0), log=None)
        again = PPOAgent(seed=42, hyperparameters={"n_steps": 512})
        train(again, ToyRateEnv(), 1024, seeds(0), log=None)
        for p, q in zip(twin.parameters(), again.parameters()):
            np.testing.assert_array_equal(p, q)

if __name__ == "__main__":
    unittest.main()
