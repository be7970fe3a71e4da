"""Conformance tallies: each suite records, per expectation flag, how many cases asserted it
and how many agreed, and the totals are printed at the end of the run."""
from __future__ import annotations

from collections import defaultdict

import pytest

_TALLY: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))


class Tally:
    def __init__(self, suite: str):
        self.suite = suite

    def record(self, flag: str, agreed: bool) -> None:
        entry = _TALLY[self.suite][flag]
        entry[0] += 1
        entry[1] += int(bool(agreed))


@pytest.fixture(scope="module")
def tally(request):
    """``tally.record(flag, agreed)`` for the suite named by the module's ``SUITE``."""
    return Tally(getattr(request.module, "SUITE", request.module.__name__))


def pytest_terminal_summary(terminalreporter):
    if not _TALLY:
        return
    terminalreporter.section("conformance tally (asserted / agreed)")
    for suite in sorted(_TALLY):
        flags = _TALLY[suite]
        line = ", ".join(f"{flag} {a}/{g}" for flag, (a, g) in sorted(flags.items()))
        terminalreporter.write_line(f"{suite}: {line}")
