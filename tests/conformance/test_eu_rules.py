"""The EU's published business rules, read in place: every rule loads, every test agrees.

``eu-rules/<COUNTRY>/<RULE-ID>/rule.json`` with ``tests/*.json`` (the upstream layout; MT keeps
``<RULE-ID>.json`` and no tests). Each rule is checked by :func:`healthcode.rules.ruleset.
parse_rule` and, independently, by the EU's own JSON schema with jsonschema, and the two must
agree; each test's Logic value must be exactly ``expected``.
"""
from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from healthcode.rules.ruleset import (Plan, RuleError, find_rule_files, judge, parse_rule,
                                      read_rule_file)
from healthcode.rules import testing as rule_testing
from tests.support import conformance_dir

SUITE = "eu-rules"
pytestmark = pytest.mark.conformance

#: Upstream files that are not usable rules, and why (each must be refused by name).
KNOWN_UPSTREAM_ERRORS = {
    "MT/RR-MT-0001/TR-MT-0001.json": "not JSON: a trailing comma inside a '===' that also has "
                                     "three operands",
    "MT/VR-MT-0005/VR-MT-0005.json": "an 'if' with four operands (guard, then, else, true): "
                                     "invalid CertLogic (certlogic-js's validator says the "
                                     "same; its evaluator would silently drop the fourth)",
}
#: The EU schema's Identifier pattern wants no leading zero and so rejects every published rule
#: ("VR-AT-0001"); we check the gateway's XR-CC-dddd form instead (see ruleset.py).
SCHEMA_IDENTIFIER_PATTERN = r"^(GR|VR|TR|RR|IR)-[A-Z]{2}-[1-9]\d*$"


def _root():
    try:
        return conformance_dir("eu-rules")
    except pytest.skip.Exception:
        return None


def _rule_files():
    root = _root()
    if root is None:
        return [pytest.param(None, id="<missing>")]
    return [pytest.param(p.relative_to(root).as_posix(), id=p.relative_to(root).as_posix())
            for p in find_rule_files(root)]


def _tests():
    root = _root()
    if root is None:
        return [pytest.param(None, None, id="<missing>")]
    paths = find_rule_files(root)
    counts = {}
    for p in paths:
        counts[p.parent] = counts.get(p.parent, 0) + 1
    params = []
    for path in paths:
        for test in rule_testing.tests_of(path, counts[path.parent]):
            rel = test.relative_to(root).as_posix()
            params.append(pytest.param(path.relative_to(root).as_posix(), rel, id=rel))
    return params


RULE_FILES = _rule_files()
TESTS = _tests()


@pytest.fixture(scope="module")
def eu_schema():
    root = conformance_dir("eu-rules")
    schema = json.loads((root / "validation-rule.schema.json").read_text(encoding="utf-8"))
    assert schema["properties"]["Identifier"]["pattern"] == SCHEMA_IDENTIFIER_PATTERN
    schema = copy.deepcopy(schema)
    schema["properties"]["Identifier"]["pattern"] = r"^(GR|VR|TR|RR|IR)-[A-Z]{2}-\d{4}$"
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("rel", RULE_FILES)
def test_rule_loads(rel, eu_schema, tally):
    root = conformance_dir("eu-rules")
    path = root / rel
    if rel in KNOWN_UPSTREAM_ERRORS:
        with pytest.raises(RuleError) as refused:
            read_rule_file(path)
        assert rel.split("/")[-1] in refused.value.message  # the error names the file
        tally.record("rules refused as upstream-broken", True)
        return
    rule = read_rule_file(path)
    schema_errors = [e.message for e in eu_schema.iter_errors(rule.data)]
    agreed = not schema_errors
    tally.record("rules loaded", agreed)
    assert agreed, schema_errors


@pytest.mark.parametrize("rule_rel, test_rel", TESTS)
def test_rule_test(rule_rel, test_rel, tally):
    root = conformance_dir("eu-rules")
    rule = read_rule_file(root / rule_rel)
    test = json.loads((root / test_rel).read_text(encoding="utf-8"))
    agreed, detail = rule_testing.run_test(rule, test)
    tally.record("rule tests", agreed)
    assert agreed, f"{test_rel} ({test.get('name', '')}): {detail}"


def _countries():
    root = _root()
    if root is None:
        return [pytest.param(None, id="<missing>")]
    return sorted({rule_rel.split("/")[0] for rule_rel, _ in (p.values for p in TESTS)})


@pytest.mark.parametrize("country", _countries())
def test_a_countrys_rules_judged_in_one_plan_agree_with_every_test(country, tally):
    """A checkpoint judges a country's rules together (ruleset.Plan, one batch): on each
    test's data, every rule's result is the one it has judged alone, and the tested rule's
    Logic value is the test's ``expected``."""
    root = conformance_dir("eu-rules")
    cases = [(r, t) for r, t in (p.values for p in TESTS) if r.split("/")[0] == country]
    rules = {rel: read_rule_file(root / rel) for rel in dict.fromkeys(r for r, _ in cases)}
    plan = Plan(rules.values())
    position = {rel: index for index, rel in enumerate(rules)}
    for rule_rel, test_rel in cases:
        test = json.loads((root / test_rel).read_text(encoding="utf-8"))
        data = {"payload": test["payload"], "external": test.get("external") or {}}
        results = plan.judge(data)
        agreed = results == [judge(rule, data) for rule in rules.values()]
        value = plan.evaluate(data)[position[rule_rel]]
        expected = test["expected"]
        agreed = agreed and (value is expected if isinstance(expected, bool) or expected is None
                             else value == expected)
        tally.record("rule tests in one plan", agreed)
        assert agreed, f"{test_rel}: {value!r} (expected {expected!r})"


def test_every_upstream_test_is_run():
    """750 test files upstream, all under a rule.json (none orphaned, none lost)."""
    root = conformance_dir("eu-rules")
    assert len(TESTS) == len(list(root.glob("*/*/tests/*.json"))) == 750
    assert len(RULE_FILES) == 110  # 102 rule.json and MT's 8


def test_known_upstream_errors_name_real_files():
    root = conformance_dir("eu-rules")
    for rel in KNOWN_UPSTREAM_ERRORS:
        assert (root / rel).is_file(), rel


# -- our format check agrees with the EU schema on broken rules too ---------------------------

MUTATIONS = [
    ("Identifier", "VR-AT-1"), ("Identifier", "XX-AT-0001"), ("Type", "Acceptence"),
    ("Country", "at"), ("Version", "1.0"), ("CertificateType", "Vaccine"),
    ("Description", []), ("Description", [{"lang": "en", "desc": "too short"}]),
    ("Description", [{"lang": "deu", "desc": "Eine Beschreibung, lang genug."}]),
    ("ValidFrom", "2021-06-01T00:00:00.000Z"), ("ValidTo", "2030-06-01"),
    ("AffectedFields", "v.0"), ("Logic", {}), ("Engine", 1), ("SchemaVersion", "one"),
]


@pytest.mark.parametrize("key, value", MUTATIONS, ids=[f"{k}={v!r}" for k, v in MUTATIONS])
def test_format_check_refuses_what_the_schema_refuses(key, value, eu_schema):
    root = conformance_dir("eu-rules")
    data = json.loads((root / "AT/VR-AT-0001/rule.json").read_text(encoding="utf-8"))
    data[key] = value
    assert list(eu_schema.iter_errors(data)), "the mutation should break the schema"
    with pytest.raises(RuleError) as refused:
        parse_rule(data, source="mutated.json")
    assert "mutated.json: VR-AT-0001" in refused.value.message or "mutated.json" in \
        refused.value.message


@pytest.mark.parametrize("missing", ["Logic", "ValidTo", "Description", "AffectedFields"])
def test_format_check_requires_what_the_schema_requires(missing, eu_schema):
    root = conformance_dir("eu-rules")
    data = json.loads((root / "AT/VR-AT-0001/rule.json").read_text(encoding="utf-8"))
    del data[missing]
    assert list(eu_schema.iter_errors(data))
    with pytest.raises(RuleError, match=f"{missing}: required"):
        parse_rule(data, source="mutated.json")
