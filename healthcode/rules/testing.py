"""Rule tests in the upstream format (eu-digital-green-certificates/dgc-business-rules-testdata).

The layout is ``<rule folder>/rule.json`` with ``<rule folder>/tests/*.json``; a test is
``{"name"?, "payload", "expected", "external": {"valueSets", "validationClock"?, ...}}``. The
rule's Logic is evaluated on ``{"payload": payload, "external": external}`` and the result
must be exactly ``expected`` (the value the Logic returns, not the rule's pass/fail: upstream
tests assert Logic values, for Acceptance and Invalidation rules alike).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import certlogic
from .ruleset import Rule, RuleError, find_rule_files, read_rule_file


@dataclass(frozen=True)
class TestOutcome:
    """One rule test: what it expected, what the Logic gave, and whether they agree."""

    __test__ = False  # not a pytest test class

    rule: str
    path: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class TestReport:
    __test__ = False

    outcomes: list[TestOutcome]
    broken_rules: list[str]  # rule files that could not be loaded, each with why
    not_tests: list[str]  # JSON files in tests/ folders that are not tests (no payload)

    @property
    def failed(self) -> list[TestOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.broken_rules


def tests_of(rule_path: Path, siblings: int) -> list[Path]:
    """A rule's tests: its folder's ``tests/``, when the rule is that folder's only rule or is
    called ``rule.json``."""
    folder = rule_path.parent / "tests"
    if not folder.is_dir() or (siblings > 1 and rule_path.name != "rule.json"):
        return []
    return sorted(folder.glob("*.json"))


def run_test(rule: Rule, test: dict) -> tuple[bool, str]:
    """Evaluate one test on one rule; ``(agreed, what happened)``."""
    data = {"payload": test["payload"], "external": test.get("external") or {}}
    expected = test["expected"]
    try:
        value = rule.program(data)
    except certlogic.CertLogicError as exc:
        return False, f"evaluation failed: {exc.message}"
    agreed = value is expected if isinstance(expected, bool) or expected is None \
        else value == expected
    return agreed, f"expected {json.dumps(expected)}, got {_show(value)}"


def _show(value) -> str:
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def run_folder(source: Path) -> TestReport:
    """Every rule under ``source`` (a folder or one rule file) against its tests."""
    report = TestReport([], [], [])
    paths = find_rule_files(source)
    per_folder: dict[Path, int] = {}
    for path in paths:
        per_folder[path.parent] = per_folder.get(path.parent, 0) + 1
    for path in paths:
        try:
            rule = read_rule_file(path)
        except RuleError as exc:
            report.broken_rules.append(exc.message)
            continue
        for test_path in tests_of(path, per_folder[path.parent]):
            try:
                test = json.loads(test_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                report.outcomes.append(TestOutcome(rule.identifier, str(test_path), "", False,
                                                   f"unreadable test file: {exc}"))
                continue
            if not isinstance(test, dict) or "payload" not in test or "expected" not in test:
                report.not_tests.append(str(test_path))
                continue
            ok, detail = run_test(rule, test)
            report.outcomes.append(TestOutcome(rule.identifier, str(test_path),
                                               str(test.get("name", test_path.stem)), ok, detail))
    return report
