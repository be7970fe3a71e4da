"""Accessibility checks with axe-core, vendored (tests/browser/vendor/axe-core, MPL-2.0).

The pages' Content-Security-Policy forbids injected scripts, so contexts that run axe are made
with ``bypass_csp=True`` (Playwright): the policy is relaxed for the injection only, in that
test context, never in the service.
"""
from __future__ import annotations

from pathlib import Path

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
#: WCAG 2.1 A and AA, and axe's best practices (headings, landmarks, regions)
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def violations(page) -> list[dict]:
    """What axe finds wrong on the page as it is now (one entry per rule, with its nodes)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS)
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]]} for v in result["violations"]]
