"""Rule selection as the EU defines it, and what a rule's result means."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from healthcode import jsontext
from healthcode.rules.modes import Mode, plan_rules, select_rules
from healthcode.rules.ruleset import (Plan, RuleError, RuleSet, judge, judge_all, parse_rule,
                                      semver_key)
from tests.rules.helpers import PRODUCT_ALLOWED, SERIES_COMPLETE, VACCINATION_RECENT, eu_rule

AT = datetime(2024, 6, 1, tzinfo=timezone.utc)


def ruleset(*rules) -> RuleSet:
    return RuleSet(parse_rule(r, source=f"{r['Identifier']}.json") for r in rules)


def ids(selected) -> list[tuple[str, str]]:
    return [(r.identifier, r.version) for r in selected]


def test_general_rules_apply_to_every_certificate_type():
    rules = ruleset(eu_rule(1, True, certificate_type="General"), eu_rule(1, True),
                    eu_rule(1, True, certificate_type="Test"),
                    eu_rule(1, True, certificate_type="Recovery"))
    for kind, own in (("Vaccination", "VR-AT-0001"), ("Test", "TR-AT-0001"),
                      ("Recovery", "RR-AT-0001")):
        selected = rules.select(country="AT", rule_type="Acceptance", certificate_type=kind,
                                at=AT)
        assert ids(selected) == [("GR-AT-0001", "1.0.0"), (own, "1.0.0")]


def test_only_the_country_and_type_asked_for():
    rules = ruleset(eu_rule(1, True), eu_rule(1, True, country="DE"),
                    eu_rule(2, True, rule_type="Invalidation"))
    assert ids(rules.select(country="AT", rule_type="Acceptance",
                            certificate_type="Vaccination", at=AT)) == [("VR-AT-0001", "1.0.0")]
    assert ids(rules.select(country="AT", rule_type="Invalidation",
                            certificate_type="Vaccination", at=AT)) == [("IR-AT-0002", "1.0.0")]


@pytest.mark.parametrize("valid_from, valid_to, selected", [
    ("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z", True),
    ("2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z", True),    # ValidFrom <= clock
    ("2024-06-01T00:00:01Z", "2025-01-01T00:00:00Z", False),
    ("2023-01-01T00:00:00Z", "2024-06-01T00:00:00Z", False),   # clock < ValidTo
    ("2023-01-01T00:00:00Z", "2024-06-01T02:00:00+02:00", False),
    ("2023-01-01T00:00:00Z", "2024-06-01T02:00:01+02:00", True),
])
def test_validity_against_the_validation_clock(valid_from, valid_to, selected):
    rules = ruleset(eu_rule(1, True, valid_from=valid_from, valid_to=valid_to))
    found = rules.select(country="AT", rule_type="Acceptance", certificate_type="Vaccination",
                         at=AT)
    assert bool(found) is selected


def test_the_newest_valid_version_of_each_identifier():
    rules = ruleset(
        eu_rule(1, False, version="1.0.0"), eu_rule(1, True, version="1.10.0"),
        eu_rule(1, False, version="1.9.3"),
        eu_rule(1, False, version="2.0.0", valid_from="2025-01-01T00:00:00Z"),  # not yet
        eu_rule(2, True, version="1.0.0-rc.1"), eu_rule(2, True, version="1.0.0"))
    selected = rules.select(country="AT", rule_type="Acceptance",
                            certificate_type="Vaccination", at=AT)
    assert ids(selected) == [("VR-AT-0001", "1.10.0"), ("VR-AT-0002", "1.0.0")]


def test_semver_order():
    versions = ["1.0.0", "0.9.9", "1.0.0-alpha", "1.0.10", "1.0.2", "10.0.0"]
    assert sorted(versions, key=semver_key) == ["0.9.9", "1.0.0-alpha", "1.0.0", "1.0.2",
                                                "1.0.10", "10.0.0"]


def test_a_duplicate_identifier_and_version_is_refused():
    with pytest.raises(RuleError, match="already loaded"):
        ruleset(eu_rule(1, True), eu_rule(1, False))


def data(mp):
    return {"payload": {"v": [{"mp": mp}]}, "external": {}}


def test_acceptance_passes_on_true_invalidation_on_false():
    acceptance = parse_rule(eu_rule(1, PRODUCT_ALLOWED))
    invalidation = parse_rule(eu_rule(1, PRODUCT_ALLOWED, rule_type="Invalidation"))
    assert judge(acceptance, data("EU/1/20/1528")).result == "passed"
    assert judge(acceptance, data("Sputnik-V")).result == "failed"
    # an Invalidation rule that evaluates to true invalidates the certificate
    assert judge(invalidation, data("EU/1/20/1528")).result == "failed"
    assert judge(invalidation, data("Sputnik-V")).result == "passed"


def test_an_undecidable_rule_is_open_never_passed():
    rule = parse_rule(eu_rule(1, {"plusTime": [{"var": "payload.v.0.dt"}, 0, "day"]}))
    assert judge(rule, {"payload": {"v": [{"dt": "2021-01-01"}]}}).result == "open"  # a date
    failing = parse_rule(eu_rule(2, {"after": [{"var": "payload.v.0.dt"}, 1]}))
    result = judge(failing, {"payload": {"v": [{}]}})
    assert result.result == "open" and result.note.startswith("evaluation failed")


def test_a_rule_reading_what_the_source_cannot_say_is_open():
    rule = parse_rule(eu_rule(1, PRODUCT_ALLOWED))
    result = judge(rule, {"payload": {"v": [{"dn": 1}]}, "external": {}},
                   unknown=frozenset({"v.0.mp"}))
    assert result.result == "open" and "v.0.mp" in result.note
    # but a pass is a pass, whatever the source could not say
    assert judge(rule, data("EU/1/20/1528"), unknown=frozenset({"v.0.ma"})).result == "passed"


def mixed_rules():
    """Rules of every outcome, two of them sharing a Logic, one Logic wanted both ways."""
    return [parse_rule(r) for r in (
        eu_rule(1, PRODUCT_ALLOWED), eu_rule(1, PRODUCT_ALLOWED, country="DE"),
        eu_rule(2, SERIES_COMPLETE), eu_rule(3, VACCINATION_RECENT),
        eu_rule(4, {"after": [{"var": "payload.v.0.dt"}, 1]}),           # fails to evaluate
        eu_rule(5, {"var": "payload.v.0.dn"}),                             # not a boolean
        eu_rule(6, PRODUCT_ALLOWED, rule_type="Invalidation"))]


@pytest.mark.parametrize("entry", [
    {"mp": "EU/1/20/1528", "dn": 2, "sd": 2, "dt": "2024-05-01"},
    {"mp": "Sputnik-V", "dn": 1, "sd": 2, "dt": "2020-01-01"},
    {"dn": 1},
    {},
])
@pytest.mark.parametrize("unknown", [frozenset(), frozenset({"v.0.mp", "v.0.sd"})])
def test_a_plan_judges_its_rules_as_each_is_judged_alone(entry, unknown):
    rules = mixed_rules()
    data = {"payload": {"v": [entry]},
            "external": {"validationClock": "2024-06-01T00:00:00Z"}}
    results = Plan(rules).judge(data, unknown)
    assert results == [judge(rule, data, unknown) for rule in rules]
    assert results == judge_all(rules, data, unknown) == judge_all(Plan(rules), data, unknown)


def test_a_plan_whose_rules_all_pass_gives_each_rules_passed_result():
    rules = [parse_rule(r) for r in (eu_rule(1, PRODUCT_ALLOWED), eu_rule(2, SERIES_COMPLETE),
                                     eu_rule(3, True, rule_type="Invalidation"))]
    complete = {"payload": {"v": [{"mp": "EU/1/20/1528", "dn": 2, "sd": 2}]}}
    results = Plan(rules).judge(complete)
    assert [r.result for r in results] == ["passed", "passed", "failed"]
    rules[2] = parse_rule(eu_rule(3, False, rule_type="Invalidation"))
    results = Plan(rules).judge(complete)
    assert results == [rule.outcomes["passed"] for rule in rules]
    assert all(a is b for a, b in zip(results, (rule.outcomes["passed"] for rule in rules)))


@pytest.mark.parametrize("lang", [None, "de", "de-AT", "xx"])
def test_a_plans_passed_entries_are_its_rules_bodies_with_their_text(lang):
    rules = [parse_rule(eu_rule(1, PRODUCT_ALLOWED, de="Eine Regel für die Tests hier")),
             parse_rule(eu_rule(2, SERIES_COMPLETE))]
    entries = Plan(rules).passed_entries(lang)
    assert entries == [rule.body("passed", lang) for rule in rules]
    assert json.loads(entries.json) == entries
    assert entries.json == jsontext.encode([rule.body("passed", lang) for rule in rules])


def test_a_selection_is_planned_once():
    rules = mixed_rules()
    assert Plan.of(rules) is Plan.of(list(rules))
    assert Plan.of(rules[:2]) is not Plan.of(rules)
    assert Plan.of(rules).evaluate(data("Sputnik-V"))[:2] == [False, False]


def test_a_modes_plan_follows_the_clock_across_rule_windows():
    """Kept per certificate type and issuer while the selection holds; made again when the
    clock crosses a ValidFrom or ValidTo, or the issuer's Invalidation rules differ."""
    rules = ruleset(eu_rule(1, True, valid_to="2024-07-01T00:00:00Z"),
                    eu_rule(2, True, valid_from="2024-07-01T00:00:00Z"),
                    eu_rule(3, True, rule_type="Invalidation", country="DE"))
    mode = Mode(name="entry", country="AT")
    july = datetime(2024, 7, 2, tzinfo=timezone.utc)
    june = plan_rules(mode, rules, "Vaccination", AT, None)
    assert ids(june.rules) == [("VR-AT-0001", "1.0.0")]
    assert plan_rules(mode, rules, "Vaccination", AT.replace(day=20), None) is june
    assert ids(plan_rules(mode, rules, "Vaccination", july, None).rules) == [
        ("VR-AT-0002", "1.0.0")]
    assert ids(plan_rules(mode, rules, "Vaccination", AT, None).rules) == ids(june.rules)
    assert ids(plan_rules(mode, rules, "Vaccination", AT, "DE").rules) == [
        ("VR-AT-0001", "1.0.0"), ("IR-DE-0003", "1.0.0")]
    for at, issuer in ((AT, None), (july, None), (AT, "DE"), (july, "DE")):
        assert list(plan_rules(mode, rules, "Vaccination", at, issuer).rules) == \
            select_rules(mode, rules, "Vaccination", at, issuer)


@pytest.mark.parametrize("logic, message", [
    ({"or": [True, False]}, 'unrecognised operator: "or"'),
    ({"if": [True, True]}, 'must have exactly 3 values/operands'),
    ({"var": "payload..v"}, "data access path doesn't have a valid format"),
])
def test_invalid_logic_is_refused_naming_the_file_and_rule(logic, message):
    with pytest.raises(RuleError) as refused:
        parse_rule(eu_rule(7, logic), source="rules/bad.json")
    assert refused.value.message.startswith("rules/bad.json: VR-AT-0007: Logic: ")
    assert message in refused.value.message


def test_hostile_logic_is_refused_at_parse():
    deep = True
    for _ in range(1000):
        deep = {"!": [deep]}
    with pytest.raises(RuleError, match="nested deeper"):
        parse_rule(eu_rule(1, deep))
    with pytest.raises(RuleError, match="more than"):
        parse_rule(eu_rule(1, {"in": ["x", ["y"] * 20_000]}))


def test_a_kept_selection_changes_when_the_clock_crosses_a_validity_edge():
    rules = ruleset(eu_rule(1, True, valid_to="2024-07-01T00:00:00Z"),
                    eu_rule(1, True, version="2.0.0", valid_from="2024-07-01T00:00:00Z"))
    ask = dict(country="AT", rule_type="Acceptance", certificate_type="Vaccination")
    assert ids(rules.select(at=AT, **ask)) == [("VR-AT-0001", "1.0.0")]
    assert ids(rules.select(at=AT, **ask)) == [("VR-AT-0001", "1.0.0")]  # kept
    later = datetime(2024, 7, 1, tzinfo=timezone.utc)
    assert ids(rules.select(at=later, **ask)) == [("VR-AT-0001", "2.0.0")]
    assert ids(rules.select(at=AT, **ask)) == [("VR-AT-0001", "1.0.0")]  # and back
