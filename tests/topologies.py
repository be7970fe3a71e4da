"""Run the test suite once per Redis topology: ``python -m tests.topologies [NAME...] [-- ARGS]``.

With no NAME it runs all three: ``single`` (the whole suite), then ``cluster`` (3 primaries,
3 replicas) and ``sentinel`` (primary, replica, 3 sentinels) for every test that touches Redis.
The conformance suites never touch Redis, so they run once, in the single run. Anything after
``--`` goes to pytest (e.g. ``-x``, ``-k verify``, a test path). ``HEALTHCODE_TEST_REDIS`` picks
the topology of a plain ``pytest`` run, which is what each round here sets.

It exits non-zero if any round failed, after printing one line per round.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.support import REPO, TOPOLOGIES

#: suites that never touch Redis: run on the single topology only
TOPOLOGY_INDEPENDENT = ("tests/conformance",)


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    names, extra = argv[:split], argv[split + 1:]
    unknown = [n for n in names if n not in TOPOLOGIES]
    if unknown:
        print(f"unknown topology {unknown[0]!r}; choose from {', '.join(TOPOLOGIES)}",
              file=sys.stderr)
        return 2
    results = []
    for name in names or TOPOLOGIES:
        args = [sys.executable, "-m", "pytest", *extra]
        if name != "single":
            args += [f"--ignore={path}" for path in TOPOLOGY_INDEPENDENT]
        started = time.monotonic()
        print(f"== {name}: {' '.join(args[1:])}", flush=True)
        code = subprocess.call(args, cwd=REPO, env={**os.environ, "HEALTHCODE_TEST_REDIS": name})
        results.append((name, code, time.monotonic() - started))
    for name, code, seconds in results:
        print(f"== {name}: {'passed' if code == 0 else f'FAILED (exit {code})'} "
              f"in {seconds:.0f} s")
    return max(code for _, code, _ in results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
