"""Overload: goodput and latency at 2x and 4x saturation, with load shedding and without.

    apt-get install wrk && python bench/overload.py              # ~5 minutes
    python bench/overload.py --levels 2,4,8 --seconds 8 --rounds 2

Two `healthcode serve` instances run side by side, as the README starts them: one with the
default shedding bounds (HEALTHCODE_MAX_QUEUE_MS, HEALTHCODE_MAX_IN_FLIGHT), one with
shedding off (no queue bound, a cap no queue reaches). First the saturation rate X is measured: closed-loop wrk, no think time, on the
instance without shedding (closed-loop load at saturation keeps a queue, which the other would
rightly shed), again before every round. Then, for each level L, wrk
plays L * X / (1 / think) scanners that each verify and think (exponential, mean --think-ms)
before the next scan, so the offered rate stays about L * X whatever the server answers, and two
probe clients measure what other clients see: the latency of their successful verifies, and
how many were shed. Rounds alternate between the instances (the machine is shared and noisy).

Reported per level and instance: offered and answered rates, goodput (200s per second), shed
per second, and probe p50/p99 of successful verifies. The target: with shedding, p99 stays
bounded (near the latency at saturation) while goodput stays near X; without, p99 grows with
the queue. 127.0.0.1 only; every phase is bounded by --seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.serving_load import VerifyProbe, describe, log, prepare, serve  # noqa: E402

NO_SHEDDING = {"HEALTHCODE_MAX_IN_FLIGHT": "100000", "HEALTHCODE_WORKER_CONNECTIONS": "100000",
               "HEALTHCODE_MAX_QUEUE_MS": "0"}


def wrk(port: int, token: str, code: str, connections: int, seconds: float,
        think_ms: float) -> dict:
    threads = max(1, min(4, connections // 50))
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "--timeout", "10s", "-s", str(HERE / "overload.lua"),
         f"http://127.0.0.1:{port}/api/v1/verify"],
        env={**os.environ, "HC_BODY": json.dumps({"code": code}), "HC_TOKEN": token,
             "HC_THINK_MS": str(think_ms)},
        capture_output=True, text=True, timeout=seconds + 60).stdout
    counts = dict(re.findall(r"(ok|shed|other)=(\d+)", out))
    errors = re.search(r"Socket errors: (.*)", out)
    elapsed = max(1, round(seconds))
    return {"ok_per_s": int(counts.get("ok", 0)) / elapsed,
            "shed_per_s": int(counts.get("shed", 0)) / elapsed,
            "other_per_s": int(counts.get("other", 0)) / elapsed,
            "answered_per_s": sum(int(v) for v in counts.values()) / elapsed,
            "socket_errors": errors.group(1) if errors else None}


def measure(server, ctx, connections: int, seconds: float, think_ms: float) -> dict:
    """wrk load and the probes at once; the probes start a moment after the load."""
    import threading

    result = {}
    load = threading.Thread(target=lambda: result.update(
        wrk(server.port, ctx["checkpoint"], ctx["code"], connections, seconds + 2, think_ms)))
    load.start()
    time.sleep(1.5)
    probe = VerifyProbe(server.port, ctx["checkpoint"], ctx["code"], clients=2, interval=0.05,
                        timeout=10)
    probed = probe.run(seconds)
    load.join(seconds + 90)
    result["probe"] = probed
    result["goodput_per_s"] = result.get("ok_per_s", 0) + probed["ok"] / seconds
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="2,4", help="multiples of the saturation rate")
    parser.add_argument("--seconds", type=float, default=10, help="per measured round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--think-ms", type=float, default=100,
                        help="mean think time of each simulated scanner")
    parser.add_argument("--saturation-connections", type=int, default=16)
    parser.add_argument("--max-connections", type=int, default=4000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        parser.error("wrk is needed: apt-get install wrk")
    log(f"healthcode overload bench, {os.cpu_count()} CPUs, command: "
        f"{' '.join([Path(sys.argv[0]).name] + (argv or sys.argv[1:]))}")
    env = {"HEALTHCODE_LOG_LEVEL": "warning"}
    results = {"levels": {}}
    with serve(env=env) as shedding, serve(env={**env, **NO_SHEDDING}) as unbounded:
        instances = {"shedding": (shedding, prepare(shedding)),
                     "no shedding": (unbounded, prepare(unbounded))}
        floor, floor_ctx = instances["no shedding"]
        wrk(floor.port, floor_ctx["checkpoint"], floor_ctx["code"], args.saturation_connections,
            2, 0)  # warm-up
        for level in [float(x) for x in args.levels.split(",") if x]:
            rounds = []
            for n in range(args.rounds):
                # saturation is measured again before every round: what this shared machine
                # gives us drifts by several times within minutes
                saturation = wrk(floor.port, floor_ctx["checkpoint"], floor_ctx["code"],
                                 args.saturation_connections, args.seconds / 2, 0)["ok_per_s"]
                connections = min(args.max_connections,
                                  max(1, round(level * saturation * args.think_ms / 1000)))
                pair = {"saturation_per_s": saturation, "scanners": connections}
                log(f"{level:g}x round {n + 1}: saturation {saturation:.0f} verifies/s (closed "
                    f"loop, {args.saturation_connections} connections) -> {connections} "
                    f"scanners, offered ~{level * saturation:.0f}/s")
                for name, (server, ctx) in instances.items():
                    run = measure(server, ctx, connections, args.seconds, args.think_ms)
                    pair[name] = run
                    probe = run["probe"]
                    log(f"    {name:11s} answered {run['answered_per_s']:6.0f}/s  goodput "
                        f"{run['goodput_per_s']:6.0f}/s ({run['goodput_per_s'] / saturation:.2f} "
                        f"of saturation)  shed {run['shed_per_s']:5.0f}/s  | "
                        f"{describe('probes', probe).strip()}")
                rounds.append(pair)
            results["levels"][level] = rounds
            for name in instances:
                p99 = sorted(r[name]["probe"]["p99_ms"] or float("inf") for r in rounds)
                share = sorted(r[name]["goodput_per_s"] / r["saturation_per_s"] for r in rounds)
                log(f"{level:g}x {name:11s} median of {len(rounds)} rounds: probe p99 "
                    f"{p99[len(p99) // 2]:.0f} ms, goodput {share[len(share) // 2]:.2f} of "
                    f"saturation")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
