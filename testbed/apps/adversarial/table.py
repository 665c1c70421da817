#!/usr/bin/env python3
"""Run the adversarial apps under a few policies and print a Markdown table.

Usage (from the repository root, after `go build -o /tmp/spw-adv ./cmd/spillway`):

    python3 testbed/apps/adversarial/table.py [--bin /tmp/spw-adv] [--out DIR]
        [--policies none,static,default] [--apps a,b] [--jobs 2]

Every run is `spillway sim --virtual --json` at seed 1; its JSON is kept in
--out (default /tmp/adv) and reused when present, so a re-run after a change
needs --fresh. Columns: goodput ÷ proportional over the scenario and its
steady half, the worst API's steady goodput ÷ its share, the highest
steady p99 ÷ SLO of any API, and the time to recover (s, the longest mark).
"""
import argparse, json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = [("steady", None), ("steady", 1.2), ("steady", 20), ("surge", None), ("ramp", None),
             ("capacity-drop", None), ("flash-crowd", None), ("priority-mix", None),
             ("cold-start", None), ("retry-storm", None), ("slow-drift", None)]
# The 50k req/s app is costly to simulate; it runs the scenarios that
# matter for its mechanism (the limit must grow to ~600 and shrink fast).
LIGHT = {"huge-capacity": [("steady", None), ("steady", 1.2), ("surge", None), ("capacity-drop", None), ("cold-start", None)]}


def run(binary, out, app, sc, load, policy, fresh):
    tag = f"{app}.{sc}.{load or 'd'}.{policy}"
    path = os.path.join(out, tag + ".json")
    if fresh or not os.path.exists(path):
        args = [binary, "sim", "--virtual", "--json", "--app", os.path.join(HERE, app + ".json"),
                "--scenario", sc, "--policy", policy]
        if load:
            args += ["--load", str(load)]
        res = subprocess.run(args, capture_output=True, text=True)
        if res.returncode != 0:
            return tag, {"error": res.stderr.strip()[-300:]}
        with open(path, "w") as f:
            f.write(res.stdout)
    with open(path) as f:
        return tag, json.load(f)


def summary(d):
    if "error" in d:
        return None
    worst, p99 = float("inf"), 0.0
    for name, a in d["per_api"].items():
        st = a["steady"]
        if st["proportional_rps"] > 0.5:
            worst = min(worst, st["goodput_per_proportional"])
        if a["slo_ms"] > 0 and st["p99_ms"] == st["p99_ms"]:
            p99 = max(p99, st["p99_ms"] / a["slo_ms"])
    rec = d.get("recovery_s")
    return {"all": d["goodput_per_proportional"], "steady": d["steady"]["goodput_per_proportional"],
            "worst": worst, "p99": p99, "rec": rec}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="/tmp/spw-adv")
    p.add_argument("--out", default="/tmp/adv")
    p.add_argument("--policies", default="none,static,default")
    p.add_argument("--apps", default="")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--fresh", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    apps = a.apps.split(",") if a.apps else sorted(f[:-5] for f in os.listdir(HERE) if f.endswith(".json"))
    policies = a.policies.split(",")
    jobs = []
    for app in apps:
        for sc, load in LIGHT.get(app, SCENARIOS):
            for pol in policies:
                jobs.append((app, sc, load, pol))
    with ThreadPoolExecutor(a.jobs) as ex:
        results = dict(ex.map(lambda j: run(a.bin, a.out, *j, a.fresh), jobs))
    fmt = lambda s: "err" if s is None else (
        f"{s['all']:.2f} / {s['steady']:.2f} / {s['worst']:.2f} / {s['p99']:.1f}× / "
        + ("never" if s["rec"] is None else f"{s['rec']:g}"))
    print("| app | scenario | " + " | ".join(policies) + " |")
    print("|---|---|" + "---|" * len(policies))
    for app in apps:
        for sc, load in LIGHT.get(app, SCENARIOS):
            cells = []
            for pol in policies:
                d = results[f"{app}.{sc}.{load or 'd'}.{pol}"]
                cells.append(fmt(summary(d)) if "error" not in d else "err: " + d["error"][-80:])
            name = sc if load is None else f"{sc} {load:g}×"
            print(f"| {app} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
