"""Benchmark: CertLogic assertions per second, ours against panzi-json-logic, same run.

The assertions are the 218 non-skipped ones of the specification's ``testSuite/`` and the 750
rule tests of the EU's published rules (``eu-rules``), each an (expression, data) pair. Both
engines get the same pairs through the same call, ``evaluate(expression, data)``, answering
every assertion (an exception counts as an answer; panzi-json-logic is wrong on some); rounds
alternate between them. Ours is also timed the way the service runs rules: compiled once,
evaluated per code (``compiled``). Goal: ratio ours/panzi >= 1 (``evaluate``).

panzi-json-logic is a bench-only dependency: ``pip install panzi-json-logic`` (the ``bench``
extra). Run as a script, the process is pinned to one CPU.

    python3 bench/certlogic.py [--seconds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from bench.rounds import alternate, pin_to_one_cpu  # noqa: E402
from healthcode import certlogic  # noqa: E402
from healthcode.errors import HealthCodeError  # noqa: E402
from healthcode.rules.ruleset import find_rule_files, read_rule_file  # noqa: E402
from healthcode.rules.testing import tests_of  # noqa: E402


def _conformance() -> Path:
    return Path(os.environ.get("HEALTHCODE_CONFORMANCE_DIR",
                               REPO.parent / "shared" / "conformance"))


def load_assertions() -> list[tuple]:
    """(expression, data) pairs: the evaluator suite's, then the rule tests'."""
    pairs = []
    for path in sorted((_conformance() / "certlogic" / "testSuite").glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        if suite.get("directive") == "skip":
            continue
        for case in suite["cases"]:
            if case.get("directive") == "skip":
                continue
            for assertion in case["assertions"]:
                if assertion.get("directive") == "skip":
                    continue
                pairs.append((assertion.get("certLogicExpression",
                                            case.get("certLogicExpression")),
                              assertion["data"]))
    suite_count = len(pairs)
    root = _conformance() / "eu-rules"
    paths = find_rule_files(root)
    counts = {}
    for p in paths:
        counts[p.parent] = counts.get(p.parent, 0) + 1
    for path in paths:
        try:
            rule = read_rule_file(path)
        except HealthCodeError:  # the upstream-broken rule files
            continue
        for test_path in tests_of(path, counts[path.parent]):
            test = json.loads(test_path.read_text(encoding="utf-8"))
            pairs.append((rule.logic, {"payload": test["payload"],
                                       "external": test.get("external") or {}}))
    return pairs, suite_count


def guarded(fn):
    def run(item):
        try:
            fn(*item)
        except Exception:  # noqa: BLE001 (an error is an answer too)
            pass
    return run


def run(seconds: float = 3.0) -> dict:
    from json_logic.cert_logic import certLogic

    pairs, suite_count = load_assertions()
    programs = {}
    for expression, _ in pairs:
        key = id(expression)
        if key not in programs:
            programs[key] = certlogic.compile(expression)
    compiled = [(programs[id(e)], d) for e, d in pairs]

    contenders = {"panzi": guarded(certLogic), "ours": guarded(certlogic.evaluate)}
    result = alternate(contenders, pairs, seconds)
    compiled_result = alternate({"compiled": guarded(lambda p, d: p(d))}, compiled, seconds / 2)
    rates, best = result["rates"], result["best"]
    return {"assertions": len(pairs), "suite": suite_count, "rule_tests": len(pairs) - suite_count,
            "rounds": result["rounds"], "panzi_per_second": rates["panzi"],
            "ours_per_second": rates["ours"],
            "compiled_per_second": compiled_result["rates"]["compiled"],
            "ratio": rates["ours"] / rates["panzi"],
            "best_round_ratio": best["ours"] / best["panzi"],
            "compiled_ratio": compiled_result["rates"]["compiled"] / rates["panzi"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="time to spend on each engine (default 3)")
    seconds = parser.parse_args(argv).seconds
    try:
        import json_logic  # noqa: F401
    except ImportError:
        print("panzi-json-logic is not installed: pip install panzi-json-logic", file=sys.stderr)
        return 2
    pin_to_one_cpu()
    result = run(seconds)
    print(f"CertLogic, {result['assertions']} assertions ({result['suite']} of testSuite, "
          f"{result['rule_tests']} EU rule tests), {result['rounds']} alternating rounds")
    print(f"  panzi-json-logic evaluate  {result['panzi_per_second']:10.0f} /s")
    print(f"  healthcode       evaluate  {result['ours_per_second']:10.0f} /s")
    print(f"  healthcode       compiled  {result['compiled_per_second']:10.0f} /s")
    print(f"  ratio ours/panzi {result['ratio']:.2f} (goal >= 1); best rounds "
          f"{result['best_round_ratio']:.2f}; compiled/panzi {result['compiled_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
