"""Conversion policies: explicit, refusing what they do not know, naming the rule that said no."""
from datetime import datetime, timedelta, timezone

import pytest

from healthcode.errors import CodeError, ConfigurationError
from healthcode.policy import Policy
from healthcode.record import Record

AT = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def record(status=None, tests=(), vaccinations=()):
    return Record.from_dict({"subject": {"name": "Ana"}, "status": status,
                             "evidence": {"tests": list(tests),
                                          "vaccinations": list(vaccinations)}})


def sample(hours_ago, result="negative", kind="pcr"):
    return {"type": kind, "result": result,
            "sampled_at": (AT - timedelta(hours=hours_ago)).isoformat()}


def dose(days_ago, number=2, of=2):
    return {"product": "EU/1/20/1528", "dose_number": number, "series_doses": of,
            "administered_on": (AT - timedelta(days=days_ago)).date().isoformat()}


PCR_48H = {"evidence": "test", "result": "negative", "types": ["pcr"], "within_hours": 48}


@pytest.mark.parametrize("status, converts", [("green", True), ("yellow", False), ("red", False)])
def test_by_default_only_green_converts(status, converts):
    policy = Policy.from_table("mo", {})
    if converts:
        assert policy.apply(record(status), AT)[0] == "green"
    else:
        with pytest.raises(CodeError) as info:
            policy.apply(record(status), AT)
        assert info.value.reason == "policy_refused" and info.value.detail["rule"] == "accept"


@pytest.mark.parametrize("tests, ok", [
    ([sample(20)], True),
    ([sample(47.9)], True),
    ([sample(49)], False),                       # too old
    ([sample(20, kind="rat")], False),           # wrong type
    ([sample(20, result="positive")], False),    # wrong result
    ([], False),                               # no evidence at all
    ([sample(-3)], False),                       # sampled in the future
])
def test_required_evidence(tests, ok):
    policy = Policy.from_table("cn", {"require": [PCR_48H]})
    if ok:
        status, until, trace = policy.apply(record("green", tests), AT)
        assert until == datetime.fromisoformat(tests[0]["sampled_at"]) + timedelta(hours=48)
        assert any("require[0]" in line for line in trace)
    else:
        with pytest.raises(CodeError) as info:
            policy.apply(record("green", tests), AT)
        assert info.value.detail["rule"] == "require[0]"


def test_validity_is_bounded_by_the_policy():
    policy = Policy.from_table("mo", {"max_validity_hours": 24, "require": [PCR_48H]})
    _, until, _ = policy.apply(record("green", [sample(40)]), AT)
    assert until == AT + timedelta(hours=8)  # the test's window ends first
    _, until, _ = policy.apply(record("green", [sample(1)]), AT)
    assert until == AT + timedelta(hours=24)  # then the policy's bound


GRANTS = {"grant": [
    {"status": "green", **PCR_48H},
    {"status": "green", "evidence": "vaccination", "complete": True, "min_days": 14,
     "max_days": 270},
]}


@pytest.mark.parametrize("evidence, rule", [
    ({"tests": [sample(10)]}, "grant[0]"),
    ({"vaccinations": [dose(30)]}, "grant[1]"),
])
def test_colourless_codes_get_a_colour_from_the_first_matching_grant(evidence, rule):
    status, _, trace = Policy.from_table("eu-dcc", GRANTS).apply(
        record(None, evidence.get("tests", ()), evidence.get("vaccinations", ())), AT)
    assert status == "green" and trace[0].startswith(f"policy: {rule}")


@pytest.mark.parametrize("vaccinations", [[dose(5)], [dose(400)], [dose(30, number=1)]])
def test_no_grant_no_conversion(vaccinations):
    with pytest.raises(CodeError) as info:
        Policy.from_table("eu-dcc", GRANTS).apply(record(None, (), vaccinations), AT)
    assert info.value.detail["rule"] == "grant"


@pytest.mark.parametrize("table, field", [
    ({"accept": ["blue"]}, "accept"),
    ({"acept": ["green"]}, "acept"),
    ({"max_validity_hours": -1}, "max_validity_hours"),
    ({"require": [{"evidence": "horoscope"}]}, "require[0].evidence"),
    ({"require": [{"evidence": "test", "types": ["smell"]}]}, "require[0].types"),
    ({"require": [{"evidence": "test", "status": "green"}]}, "require[0].status"),
    ({"grant": [{"evidence": "test"}]}, "grant[0].status"),
    ({"grant": [{"evidence": "test", "status": "green", "within": 3}]}, "grant[0].within"),
])
def test_invalid_policies_fail_at_start_up_naming_the_field(table, field):
    with pytest.raises(ConfigurationError) as info:
        Policy.from_table("x", table, source="policies/x.toml")
    assert f"policies/x.toml: policy.{field}" in info.value.message
