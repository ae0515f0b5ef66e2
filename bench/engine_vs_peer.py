#!/usr/bin/env python3
"""Engine benchmark: `portfolio-worker simulate` against the numpy peer on the same request,
same machine, same invocation (runs interleaved, so load drifts hit both alike).

Prints each side's wall-clock times, the ratio of medians (and of bests), throughput in
scenario-months per second, the engine's 1- vs 2-thread scaling and peak RSS.

    python3 bench/engine_vs_peer.py [--rounds 7] [--peer ../shared/peers/numpy_peer.py]
                                    [--request ../shared/peers/request-default.json]

Needs numpy for the peer (the script makes a venv in .venv if numpy is missing) and a release
build of the worker (built if missing).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_with_numpy():
    for py in (sys.executable, os.path.join(ROOT, ".venv", "bin", "python")):
        if os.path.exists(py) and subprocess.run([py, "-c", "import numpy"], capture_output=True).returncode == 0:
            return py
    print("creating .venv with numpy for the peer", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", os.path.join(ROOT, ".venv")], check=True)
    py = os.path.join(ROOT, ".venv", "bin", "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "numpy"], check=True)
    return py


def timed(cmd):
    """Wall seconds and peak RSS (KiB) of one run of cmd."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--peer", default=os.path.join(ROOT, "..", "shared", "peers", "numpy_peer.py"))
    ap.add_argument("--request", default=os.path.join(ROOT, "..", "shared", "peers", "request-default.json"))
    ap.add_argument("--worker", default=os.path.join(ROOT, "target", "release", "portfolio-worker"))
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = ap.parse_args()
    if not os.path.exists(args.peer):
        sys.exit(f"the numpy peer is not at {args.peer}; pass --peer")
    if not os.path.exists(args.worker):
        subprocess.run(["cargo", "build", "--release", "-p", "portfolio-worker"], cwd=ROOT, check=True)
    py = python_with_numpy()
    request = json.load(open(args.request))
    scenario_months = request["n_scenarios"] * request["years"] * 12
    ours = [args.worker, "simulate", "--request", args.request, "--format", "json"]
    peer = [py, args.peer, args.request]

    timed(ours)  # warm the page cache
    times = {"engine 2 threads": [], "engine 1 thread": [], "numpy peer": []}
    for _ in range(args.rounds):
        times["numpy peer"].append(timed(peer)[0])
        times["engine 2 threads"].append(timed(ours + ["--threads", "2"])[0])
        times["engine 1 thread"].append(timed(ours + ["--threads", "1"])[0])
    peak_kib = timed(ours + ["--threads", "2"])[1]

    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    summary = {
        "rounds": args.rounds,
        "median_s": med,
        "best_s": best,
        "speedup_vs_peer_median": med["numpy peer"] / med["engine 2 threads"],
        "speedup_vs_peer_best": best["numpy peer"] / best["engine 2 threads"],
        "scaling_2_vs_1_thread": med["engine 1 thread"] / med["engine 2 threads"],
        "engine_scenario_months_per_s": scenario_months / med["engine 2 threads"],
        "peer_scenario_months_per_s": scenario_months / med["numpy peer"],
        "engine_peak_rss_mib": peak_kib / 1024,
    }
    if args.json:
        print(json.dumps(summary))
        return
    for k in times:
        print(f"{k:18} median {med[k]*1e3:8.1f} ms   best {best[k]*1e3:8.1f} ms")
    print(f"speed-up vs numpy peer: {summary['speedup_vs_peer_median']:.1f}x (median), "
          f"{summary['speedup_vs_peer_best']:.1f}x (best)")
    print(f"2 threads vs 1: {summary['scaling_2_vs_1_thread']:.2f}x; "
          f"engine {summary['engine_scenario_months_per_s']:.3g} scenario-months/s, "
          f"peer {summary['peer_scenario_months_per_s']:.3g}; peak RSS {summary['engine_peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
