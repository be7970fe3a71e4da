"""Alternating timed rounds: the floor and the contender take turns, so drift in CPU frequency or
a noisy neighbour on this shared machine hits both alike."""
from __future__ import annotations

import os
import time
from typing import Callable

ROUND_SECONDS = 0.25


def timed_round(fn: Callable[[str], object], texts: list[str],
                seconds: float) -> tuple[int, float]:
    """Decode the samples over and over for ``seconds``; return (decodes, elapsed)."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for text in texts:
            fn(text)
        count += len(texts)
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def alternate(contenders: dict[str, Callable], texts: list[str], seconds: float) -> dict:
    """Rates per contender over all rounds, the best round of each, and the round count."""
    for fn in contenders.values():  # warm-up: caches, imports, first-call costs
        timed_round(fn, texts, 0.0)
    totals = {name: [0, 0.0] for name in contenders}
    best = dict.fromkeys(contenders, 0.0)
    rounds = max(1, round(seconds / ROUND_SECONDS))
    for _ in range(rounds):
        for name, fn in contenders.items():
            count, elapsed = timed_round(fn, texts, seconds / rounds)
            totals[name][0] += count
            totals[name][1] += elapsed
            best[name] = max(best[name], count / elapsed)
    return {"rates": {name: count / elapsed for name, (count, elapsed) in totals.items()},
            "best": best, "rounds": rounds}


def pin_to_one_cpu() -> None:
    """One core, as per-core targets are stated; not every platform can pin."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
