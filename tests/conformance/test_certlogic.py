"""CertLogic conformance: the specification's evaluator and validator test suites, read in place.

``certlogic/testSuite/*.json``: every assertion is one test, its expression evaluated on its
data, the value compared with ``expected`` as certlogic-js's runner does (deep equality; here
also type-exact, so ``1`` is not ``true``). Assertions upstream marks ``"directive": "skip"``
(on the assertion, its case or its file) are reported as skipped with the reason below: they
ask for behaviour the specification does not define.

``certlogic/validation-testSuite/*.json``: every case's ``issues`` must be exactly what
:func:`healthcode.certlogic.validate` returns, and an expression is valid exactly when it has
none (as certlogic-js's runner checks).
"""
from __future__ import annotations

import json

import pytest

from healthcode import certlogic
from tests.support import conformance_dir

SUITE = "certlogic"
pytestmark = pytest.mark.conformance

#: Why upstream skips what it skips (``"directive": "skip"``), by file.
UPSTREAM_SKIPS = {
    "patched-reduce.json": "needs the optional 'data' key in reduce's lambda context, which the "
                           "specification says CertLogic *may* add one day; neither reference "
                           "engine has it, so rules relying on it would decide differently there",
    "ins-with-nulls.json": "asks 'in' on a null right-hand side to be false, where the "
                           "specification makes a non-array right-hand side an error",
}


def _data_root():
    try:
        return conformance_dir("certlogic")
    except pytest.skip.Exception:
        return None


def same(a, b) -> bool:
    """Deep, type-exact equality of JSON values (``True`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def _assertions():
    root = _data_root()
    if root is None:
        return [pytest.param(None, id="<missing>")]
    params = []
    for path in sorted((root / "testSuite").glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for case in suite["cases"]:
            for index, assertion in enumerate(case["assertions"]):
                skipped = "skip" in (suite.get("directive"), case.get("directive"),
                                     assertion.get("directive"))
                expression = assertion.get("certLogicExpression",
                                           case.get("certLogicExpression"))
                item = {"file": path.name, "case": case["name"], "expression": expression,
                        "data": assertion["data"], "expected": assertion["expected"],
                        "message": assertion.get("message", f"#{index + 1}")}
                marks = [pytest.mark.skip(reason=f"upstream skip: {UPSTREAM_SKIPS[path.name]}")
                         ] if skipped else []
                params.append(pytest.param(item, marks=marks,
                                           id=f"{path.stem}:{case['name']}#{index + 1}"))
    return params


def _validation_cases():
    root = _data_root()
    if root is None:
        return [pytest.param(None, id="<missing>")]
    params = []
    for path in sorted((root / "validation-testSuite").glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for index, case in enumerate(suite["cases"]):
            params.append(pytest.param(case, id=f"{path.stem}#{index + 1}"))
    return params


ASSERTIONS = _assertions()
VALIDATION_CASES = _validation_cases()


@pytest.mark.parametrize("item", ASSERTIONS)
def test_evaluator_assertion(item, tally):
    conformance_dir("certlogic")
    result = certlogic.evaluate(item["expression"], item["data"])
    agreed = same(result, item["expected"])
    tally.record("testSuite", agreed)
    assert agreed, (f"{item['file']} / {item['case']} / {item['message']}: expected "
                    f"{item['expected']!r}, got {result!r}")


@pytest.mark.parametrize("item", ASSERTIONS)
def test_suite_expressions_are_valid(item):
    """The evaluator suite only uses valid CertLogic: the validator must agree."""
    conformance_dir("certlogic")
    assert certlogic.validate(item["expression"]) == []


def _suite_files():
    root = _data_root()
    if root is None:
        return [pytest.param(None, id="<missing>")]
    return [pytest.param(p.name, id=p.stem) for p in sorted((root / "testSuite").glob("*.json"))]


@pytest.mark.parametrize("name", _suite_files())
def test_a_batch_of_a_files_expressions_answers_as_each_alone(name, tally):
    """A checkpoint judges its rules in one batch (certlogic.Batch): every valid expression of
    a suite file, batched, on every assertion's data of that file, must give what each gives
    alone (the same value, or the same error)."""
    root = conformance_dir("certlogic")
    items = [p.values[0] for p in ASSERTIONS if p.values[0]["file"] == name]
    programs = []
    for item in items:
        if certlogic.is_valid(item["expression"]):
            program = certlogic.compile_cached(item["expression"])
            if program not in programs:
                programs.append(program)
    batch = certlogic.Batch(programs)
    assert (root / "testSuite" / name).is_file()
    for item in items:
        for program, value in zip(programs, batch(item["data"]), strict=True):
            try:
                single, error = program(item["data"]), None
            except certlogic.CertLogicError as exc:
                single, error = None, exc
            if error is not None:
                agreed = type(value) is type(error) and value.message == error.message
            elif isinstance(single, certlogic.DateTime):
                agreed = type(value) is certlogic.DateTime and value.ms == single.ms
            else:
                agreed = same(value, single)
            tally.record("testSuite batched", agreed)
            assert agreed, (f"{name} / {item['case']} / {item['message']}: "
                            f"{program.expression}: batched {value!r}, alone "
                            f"{error if error is not None else single!r}")


@pytest.mark.parametrize("case", VALIDATION_CASES)
def test_validation_case(case, tally):
    conformance_dir("certlogic")
    issues = certlogic.validate(case["certLogicExpression"])
    agreed = issues == case["issues"] and certlogic.is_valid(case["certLogicExpression"]) == (
        not case["issues"])
    tally.record("validation-testSuite", agreed)
    assert issues == case["issues"]


def test_the_suite_has_the_size_upstream_states():
    """232 assertions of which 14 skipped (README), 23 validation cases: none lost on the way."""
    conformance_dir("certlogic")
    skipped = [p for p in ASSERTIONS if p.marks]
    assert (len(ASSERTIONS), len(skipped), len(VALIDATION_CASES)) == (232, 14, 23)


def test_upstream_skips_are_refused_as_the_spec_says():
    """The skipped 'in' assertions on a null array fail evaluation rather than answer false."""
    conformance_dir("certlogic")
    expression = {"in": [{"var": "x"}, {"var": "y"}]}
    for data in (None, {}, {"x": None}, {"x": None, "y": None}):
        with pytest.raises(certlogic.EvaluationError):
            certlogic.evaluate(expression, data)
