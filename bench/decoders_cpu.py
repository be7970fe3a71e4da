"""The decoder benches' adapter/floor ratios in CPU time, for a machine other work shares.

``decode_eu_dcc.py``, ``decode_shc.py`` and ``bench/run.py --only decoders`` time wall-clock
rounds; on a machine whose cores other processes share, a round that loses the CPU half-way
counts the wait as decoding, and two runs a minute apart disagree by more than the effect
looked for. Here the same floors and adapters (imported from those benches, unchanged) take
turns in short rounds timed with this thread's CPU time, and each contender's fastest round is
compared (the round least disturbed by a neighbour sharing caches); the median of the per-round
ratios is printed too.

    python3 bench/decoders_cpu.py [--seconds 4] [--trust-lists]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from bench import decode_eu_dcc, decode_shc  # noqa: E402
from bench.rounds import pin_to_one_cpu  # noqa: E402
from mapping.eu_dcc import EUDCCAdapter  # noqa: E402


def compare(floor, adapter, texts: list[str], seconds: float) -> dict:
    """Alternate one pass of ``floor`` and one of ``adapter`` over ``texts`` for ``seconds``."""
    for text in texts:  # warm-up: caches, imports, the adapters' key indexes
        floor(text)
        adapter(text)
    times: dict[str, list[float]] = {"floor": [], "adapter": []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(times["floor"]) < 5:
        for name, fn in (("floor", floor), ("adapter", adapter)):
            start = time.thread_time()
            for text in texts:
                fn(text)
            times[name].append(time.thread_time() - start)
    ratios = [f / a for f, a in zip(times["floor"], times["adapter"])]
    return {"rounds": len(ratios), "per_decode_us": {
                name: min(values) / len(texts) * 1e6 for name, values in times.items()},
            "ratio_best_rounds": min(times["floor"]) / min(times["adapter"]),
            "ratio_median": statistics.median(ratios)}


def eu_dcc(seconds: float, trust_lists: bool) -> dict:
    adapter = EUDCCAdapter()
    trust, codes, keys = decode_eu_dcc.load_corpus(adapter)
    if trust_lists:
        from bench.trust_lists import load_shared_lists
        load_shared_lists(trust)
    clock = dict(codes)
    return compare(lambda text: decode_eu_dcc.floor_decode(text, keys),
                   lambda text: adapter.decode(text, trust=trust, at=clock[text]),
                   [text for text, _ in codes], seconds)


def shc(seconds: float, trust_lists: bool) -> dict:
    # three passes over the three samples per round, so one round outlasts the timer's grain
    return compare(decode_shc.make_floor(), decode_shc.make_adapter(trust_lists),
                   decode_shc.load_samples() * 3, seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per scheme")
    parser.add_argument("--trust-lists", action="store_true",
                        help="also load the shared real trust lists into the adapters' stores")
    args = parser.parse_args(argv)
    pin_to_one_cpu()
    for name, run in (("eu-dcc", eu_dcc), ("shc", shc)):
        result = run(args.seconds, args.trust_lists)
        us = result["per_decode_us"]
        print(f"{name:7s} floor {us['floor']:6.1f} us, adapter {us['adapter']:6.1f} us per decode"
              f" (best rounds); ratio adapter/floor {result['ratio_best_rounds']:.2f} best "
              f"rounds, {result['ratio_median']:.2f} median of {result['rounds']} rounds "
              f"(target >= 0.70){', shared trust lists loaded' if args.trust_lists else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
