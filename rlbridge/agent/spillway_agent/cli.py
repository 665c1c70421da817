"""Command line: ``python -m spillway_agent run|train``.

``run`` drives an engine (or a simulator) with a trained policy; ``train``
trains a numpy PPO policy against ``spillway sim --serve --virtual`` in
lockstep. See ``rlbridge/agent/README.md``.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

from .client import SpillwayClient, SpillwayError, SpillwayHTTPError, read_token_file
from .clusters import UNLOADED, DynamicClusters, overloaded_services
from .env import SpillwayEnv
from .ppo import PPOAgent, evaluate, train

# Eval episodes use these seeds every time, so evaluations are comparable.
DEFAULT_EVAL_SEEDS = (9001, 9002, 9003, 9004, 9005)


class _SB3Policy:
    """Adapter giving a stable-baselines3 model the ``predict`` of PPOAgent.

    SB3 models (like the seed's) were trained on the raw observation, so the
    SLO is ignored here.
    """

    def __init__(self, path):
        try:
            from stable_baselines3 import PPO
        except ImportError:
            raise SystemExit("--algo sb3 needs stable-baselines3 (pip install stable-baselines3)")
        self.model = PPO.load(path)

    def predict(self, obs, slo_ms=None, deterministic=True):
        action, _ = self.model.predict(np.asarray(obs, dtype=np.float32),
                                       deterministic=deterministic)
        return np.asarray(action, dtype=np.float64).reshape(-1)


def _client(url, token_file, timeout_s):
    token = read_token_file(token_file) if token_file else None
    return SpillwayClient(url, token=token, timeout_s=timeout_s)


def _model_setting(args, policy, key, default):
    """A run setting: the flag when given, else what the model was trained
    with (its meta), else ``default``."""
    val = getattr(args, key)
    if val is not None:
        return val
    meta = getattr(policy, "meta", None) or {}
    return meta.get(key) or default


def cmd_run(args):
    """Runs the policy on every cluster of the server (or --cluster): one
    env per cluster, all acting before each observation, in lock step or on
    the wall clock alike, so what runs is what was benchmarked."""
    client = _client(args.server, args.token_file, args.timeout)
    if args.algo == "sb3":
        policy = _SB3Policy(args.model)
    else:
        policy = PPOAgent.load(args.model)
    apply = _model_setting(args, policy, "apply", "topfull")
    obs_kind = getattr(policy, "obs_kind", "seed")
    if args.clusters == "dynamic":
        if args.cluster is not None:
            raise ValueError("--cluster picks a static cluster; it cannot go with --clusters dynamic")
        return _run_dynamic(args, client, policy, apply, obs_kind)
    if args.cluster is None:
        clusters = sorted({a.get("cluster") for a in client.apis()}, key=str)
        if not clusters and args.lockstep:
            clusters = sorted({a.get("cluster") for a in client.reset()}, key=str)
    else:
        clusters = [args.cluster]
    if not clusters:
        raise ValueError("the server has no API under agent control")
    envs = [SpillwayEnv(client, cluster=c, apply=apply, max_steps=None, rho=args.rho,
                        lockstep=args.lockstep, initial_rate=args.initial_rate, obs=obs_kind,
                        step_interval_s=args.interval)
            for c in clusters]
    for env in envs:
        env.reset(options={"defer_observe": True})
    observe = _observer(client, envs, args.lockstep, args.interval)
    obs = [env._first(*m)[0] for env, m in zip(envs, observe())]
    print(f"run: clusters {', '.join(str(c) for c in clusters)} "
          f"({sum(len(e.apis) for e in envs)} APIs), apply {apply}, obs {obs_kind}, "
          f"{'lockstep' if args.lockstep else 'wall clock'}", flush=True)

    def one_step(step):
        acted = [env.act(policy.predict(o, env.slo_ms, deterministic=True))
                 for env, o in zip(envs, obs)]
        reward, done = 0.0, False
        for i, (env, m) in enumerate(zip(envs, observe())):
            obs[i], r, terminated, _, info = env._outcome(acted[i], *m)
            reward += r
            done = done or terminated
            if step == 1 or step % 10 == 0 or terminated:
                print(f"step {step}  cluster {clusters[i]}  goodput {info['goodput']:.1f} req/s  "
                      f"p95 {info['latency']:.1f} ms  "
                      f"rate_sum {sum(info['rates'].values()):.1f} req/s  "
                      f"action {acted[i]:+.3f}", flush=True)
        return reward, done

    return _run_steps(args, one_step)


def _run_dynamic(args, client, policy, apply, obs_kind):
    """``run --clusters dynamic``: the clusters are re-formed after every
    observation from the services overloaded now (see
    :mod:`spillway_agent.clusters`), one env per current cluster."""
    def make_env(name):
        return SpillwayEnv(client, cluster=name, apply=apply, max_steps=None, rho=args.rho,
                           lockstep=args.lockstep, initial_rate=args.initial_rate, obs=obs_kind,
                           step_interval_s=args.interval)

    # One env over every API posts the initial rates, as a static run's do.
    start = make_env(None)
    start.reset(options={"defer_observe": True})
    apis = start.apis
    if not any(a.get("services") for a in apis):
        print("run: no API lists its services; the clusters stay static", flush=True)
    if not args.lockstep:
        try:
            client.services()
        except SpillwayHTTPError as e:
            if e.status == 404:
                raise ValueError(f"--clusters dynamic needs the server's per-service overload: {e}")
            raise
    clusters = DynamicClusters(make_env, start.rates)
    wait = _waiter(client, args.lockstep, args.interval)

    def observe(body, acted):
        """Re-forms the clusters and observes each: ``[(name, env, obs,
        reward, done)]``."""
        services = body.get("services") if body is not None else None
        if services is None:
            services = client.services()
        out = []
        for name, env, new in clusters.reform(apis, overloaded_services(services)):
            m = env._metrics_from_body(body) if body is not None else env._read_metrics()
            if new or id(env) not in acted:
                out.append((name, env, env._first(*m)[0], 0.0, env.server_done))
            else:
                obs, r, terminated, _, info = env._outcome(acted[id(env)], *m)
                out.append((name, env, obs, r, terminated))
        return out

    current = observe(wait(), {})
    print(f"run: dynamic clusters over {len(apis)} APIs, apply {apply}, obs {obs_kind}, "
          f"{'lockstep' if args.lockstep else 'wall clock'}; now "
          f"{', '.join(name for name, *_ in current)}", flush=True)

    def one_step(step):
        # The APIs that cross no overloaded service are raised freely, as
        # TopFull's are (SpillwayEnv.relax); every overload cluster acts on
        # the policy.
        acted = {id(env): env.relax() if name == UNLOADED
                 else env.act(policy.predict(obs, env.slo_ms, deterministic=True))
                 for name, env, obs, _, _ in current}
        current[:] = observe(wait(), acted)
        reward = sum(r for *_, r, _ in current)
        done = any(d for *_, d in current)
        if step == 1 or step % 10 == 0 or done:
            rates = clusters.rates
            print(f"step {step}  clusters {' | '.join(f'{name}: {len(env.apis)}' for name, env, *_ in current)}  "
                  f"rate_sum {sum(rates.values()):.1f} req/s  re-forms {clusters.forms}", flush=True)
            for name, env, *_ in current:
                print(f"  cluster {name}  goodput {sum(env._goodput.values()):.1f} req/s  "
                      f"p95 {max(env._latency.values(), default=0.0):.1f} ms  "
                      f"action {env._last_action:+.3f}  rates "
                      f"{' '.join(f'{n}={env.rates[n]:.0f}' for n in (a['name'] for a in env.apis))}",
                      flush=True)
        return reward, done

    return _run_steps(args, one_step)


def _waiter(client, lockstep, interval_s):
    """A function that waits one step: in lock step it returns the
    ``POST /step`` answer, else None once the engine has ticked (see
    :func:`_observer`)."""
    if lockstep:
        return client.step
    observe = _observer(client, [], False, interval_s)

    def wait():
        observe()
        return None
    return wait


def _observer(client, envs, lockstep, interval_s):
    """A function that waits one step and returns each env's
    ``(metrics, tick)``: one ``POST /step`` for all envs in lock step, else
    a wait for the engine's next tick (``tick`` in ``GET /apis``, polled
    every 20 ms) and each env's reads."""
    if lockstep:
        def observe():
            body = client.step()
            return [env._metrics_from_body(body) for env in envs]
        return observe

    def tick_of():
        ticks = [a.get("tick") for a in client.apis()]
        return max(ticks) if ticks and None not in ticks else None

    seen = [tick_of()]
    last = [time.monotonic()]

    def observe():
        # Act right after each engine tick, as in lock step: wait for the
        # bridge's tick count to move past the one last read. A server that
        # reports no tick is read on the clock, an interval after the last
        # step.
        deadline = last[0] + 1.5 * interval_s
        while True:
            now = time.monotonic()
            if seen[0] is None:
                if now >= last[0] + interval_s:
                    break
                time.sleep(min(0.02, last[0] + interval_s - now))
                continue
            tick = tick_of()
            if tick != seen[0] or now >= deadline:
                seen[0] = tick
                break
            time.sleep(0.02)
        last[0] = time.monotonic()
        return [env._read_metrics() for env in envs]
    return observe


def _run_steps(args, one_step):
    """Calls ``one_step(step)`` (returning reward and whether the server is
    done) until ``--steps``, the server's done, or Ctrl-C."""
    step, total_reward = 0, 0.0
    try:
        while args.steps is None or step < args.steps:
            step += 1
            reward, done = one_step(step)
            total_reward += reward
            if done:
                print("server reports the scenario done", flush=True)
                break
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    print(f"run: {step} steps, total reward {total_reward:.2f}", flush=True)
    return 0


def _final_path(out):
    root, ext = os.path.splitext(out)
    return f"{root}.final{ext or '.json'}"


def cmd_train(args):
    client = _client(args.sim, args.token_file, args.timeout)
    apply = args.apply or "cost"
    env = SpillwayEnv(client, cluster=args.cluster, apply=apply, max_steps=args.max_steps,
                      rho=args.rho, lockstep=True, initial_rate=args.initial_rate, obs=args.obs,
                      slo_penalty=args.slo_penalty, reward=args.reward)
    hp = {}
    for key in ("n_steps", "batch_size", "n_epochs", "learning_rate"):
        val = getattr(args, key)
        if val is not None:
            hp[key] = val
    if args.resume:
        # Weights, log_std and trained_steps from the checkpoint; Adam's
        # moments start afresh, and the episodes continue on a stream of
        # their own, so a resumed run is reproducible but not bit-identical
        # to an uninterrupted one.
        agent = PPOAgent.load(args.resume, seed=args.seed)
        agent.hp.update(hp)
        if agent.obs_kind != args.obs:
            raise ValueError(f"--resume {args.resume}: obs {agent.obs_kind}, not --obs {args.obs}")
    else:
        agent = PPOAgent(seed=args.seed, hyperparameters=hp, features={"obs": args.obs})
    if args.cluster is None:  # every cluster of an app acts in each step
        env.companion_policy = lambda obs, slo: agent.predict(obs, slo, deterministic=True)
    agent.meta.update({"apply": apply, "max_steps": args.max_steps, "rho": args.rho,
                       "slo_penalty": args.slo_penalty, "obs": args.obs, "reward": args.reward,
                       "initial_rate": args.initial_rate, "cluster": args.cluster})

    seed_rng = np.random.default_rng([args.seed, int(agent.meta.get("trained_steps", 0))]
                                     if args.resume else args.seed)
    if args.random_initial_rates:
        env.initial_rate_rng = np.random.default_rng([args.seed, 1])

    def episode_seeds():
        while True:
            yield int(seed_rng.integers(0, 2**31 - 1))

    eval_seeds = [int(s) for s in args.eval_seeds.split(",")] if args.eval_seeds else []
    best = {"reward": -math.inf}
    final_out = _final_path(args.out)

    def on_eval(result, update, steps):
        print(f"eval after update {update} ({steps} steps): mean_reward {result['mean_reward']:.3f}"
              f"  mean_goodput_ratio {result['mean_goodput_ratio']:.4f}"
              f"  episodes {result['episodes']}", flush=True)
        if result["mean_reward"] > best["reward"]:
            best["reward"] = result["mean_reward"]
            agent.meta["eval"] = dict(result, update=update, steps=steps)
            agent.save(args.out)
            print(f"  new best model saved to {args.out}", flush=True)

    use_eval = args.eval_every > 0 and eval_seeds
    print(f"train: {args.steps} steps against {args.sim}, seed {args.seed}, apply {apply}, "
          f"obs {args.obs}, "
          f"max_steps {args.max_steps}, n_steps {agent.hp['n_steps']}", flush=True)
    started = time.monotonic()
    try:
        train(agent, env, args.steps, episode_seeds(),
              eval_fn=(lambda a: evaluate(a, env, eval_seeds)) if use_eval else None,
              eval_every=args.eval_every, log=lambda s: print(s, flush=True), on_eval=on_eval)
    except KeyboardInterrupt:
        print("interrupted; saving the model as it is", flush=True)
    agent.meta.pop("eval", None)
    agent.save(final_out)
    if not use_eval:  # nothing to pick a best from: --out is the final model
        agent.save(args.out)
        print(f"model saved to {args.out} (and {final_out})", flush=True)
    else:
        print(f"best model (eval mean_reward {best['reward']:.3f}) in {args.out}; "
              f"final model in {final_out}", flush=True)
    print(f"train: done in {time.monotonic() - started:.1f}s", flush=True)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="spillway_agent",
                                description="Spillway's RL agent (TopFull-style PPO rate control)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--cluster", default=None, help="only the APIs of this cluster (default all)")
        sp.add_argument("--apply", choices=["cost", "cost-strict", "topfull", "seed"], default=None,
                        help="how the action becomes rates (run: the model's, train: cost)")
        sp.add_argument("--token-file", default=None, help="file holding the bearer token")
        sp.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout in seconds")
        sp.add_argument("--rho", type=float, default=0.01, help="latency penalty per ms over SLO")
        sp.add_argument("--initial-rate", type=float, default=1000.0,
                        help="rate (req/s) posted to every API on reset")

    r = sub.add_parser("run", help="apply a trained policy to an engine or simulator")
    r.add_argument("--server", required=True, help="engine URL, e.g. http://127.0.0.1:8082")
    r.add_argument("--model", required=True, help="model file (.json/.npz, or .zip with --algo sb3)")
    r.add_argument("--lockstep", action="store_true",
                   help="advance a --virtual simulator with POST /step instead of the clock")
    r.add_argument("--steps", type=int, default=None, help="stop after N steps (default: no limit)")
    r.add_argument("--algo", choices=["numpy", "sb3"], default="numpy")
    r.add_argument("--interval", type=float, default=1.0,
                   help="seconds per step on the wall clock (the policy's tick)")
    r.add_argument("--clusters", choices=["static", "dynamic"], default="static",
                   help="static: the policy's clusters (default); dynamic: re-formed every step "
                        "from the services overloaded now (GET /services), as TopFull's")
    common(r)
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("train", help="train a numpy PPO policy against a lockstep simulator")
    t.add_argument("--sim", required=True, help="URL of spillway sim --serve --virtual")
    t.add_argument("--steps", type=int, required=True,
                   help="env steps to train for (rounded up to whole rollouts)")
    t.add_argument("--out", required=True,
                   help="model file (.json or .npz); the final model also goes to NAME.final.EXT")
    t.add_argument("--seed", type=int, default=0, help="seed of weights, noise and episodes")
    t.add_argument("--eval-every", type=int, default=5, help="evaluate every K updates (0: never)")
    t.add_argument("--eval-seeds", default=",".join(str(s) for s in DEFAULT_EVAL_SEEDS),
                   help="comma-separated /reset seeds of the evaluation episodes")
    t.add_argument("--max-steps", type=int, default=50, help="episode length in steps")
    t.add_argument("--random-initial-rates", action=argparse.BooleanOptionalAction, default=True,
                   help="start each training episode from rates drawn log-uniformly within the "
                        "bounds (evaluation always starts from --initial-rate)")
    t.add_argument("--resume", default=None,
                   help="continue from this model (a checkpoint: --out or NAME.final.EXT)")
    t.add_argument("--obs", choices=["v2", "seed"], default="v2",
                   help="observation and reward: v2 (default) or the seed's")
    t.add_argument("--reward", choices=["optimal", "delta"], default="optimal",
                   help="v2 reward: goodput ÷ the simulator's optimal admission (default), "
                        "or the change in goodput")
    t.add_argument("--slo-penalty", type=float, default=0.2,
                   help="v2 reward: weight of the worst API's excess over its SLO "
                        "(0.2 for --reward optimal; 0.005 suits delta)")
    t.add_argument("--n-steps", type=int, default=None, help="rollout length (default 1024)")
    t.add_argument("--batch-size", type=int, default=None, help="minibatch size (default 128)")
    t.add_argument("--n-epochs", type=int, default=None, help="epochs per update (default 10)")
    t.add_argument("--learning-rate", type=float, default=None, help="Adam step (default 3e-4)")
    common(t)
    t.set_defaults(func=cmd_train)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpillwayError as e:
        print(f"spillway_agent: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"spillway_agent: {e}", file=sys.stderr)
        return 1
