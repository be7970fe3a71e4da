"""Our TOML policies as EU rules: the exported rules decide exactly as the policy does
(a property over generated policies, records and clocks), and what cannot be said is refused."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthcode.cli import main
from healthcode.errors import CodeError
from healthcode.policy import Policy
from healthcode.record import Record, format_time
from healthcode.rules.export import NotExportable, export_policy
from healthcode.rules.projection import project_all
from healthcode.rules.ruleset import parse_rule

BASE = datetime(2026, 6, 1, tzinfo=timezone.utc)

# -- generated policies -----------------------------------------------------------------------------

test_rules = st.fixed_dictionaries({"evidence": st.just("test")}, optional={
    "result": st.sampled_from(["negative", "positive"]),
    "types": st.lists(st.sampled_from(["pcr", "rat"]), unique=True),
    "within_hours": st.integers(0, 120)})
vaccination_rules = st.fixed_dictionaries({"evidence": st.just("vaccination")}, optional={
    "complete": st.booleans(), "min_days": st.integers(0, 300),
    "max_days": st.integers(0, 400)})
recovery_rules = st.fixed_dictionaries({"evidence": st.just("recovery")})
conditions = st.one_of(test_rules, vaccination_rules, recovery_rules)
grants = conditions.flatmap(lambda c: st.sampled_from(["green", "yellow", "red"]).map(
    lambda s: {**c, "status": s}))
policies = st.fixed_dictionaries({
    "accept": st.lists(st.sampled_from(["green", "yellow", "red"]), unique=True, min_size=1),
    "grant": st.lists(grants, max_size=3), "require": st.lists(conditions, max_size=2)})

# -- generated records (colourless: what a DCC engine sees) and clocks ------------------------------


def day(at: datetime, offset: int, partial: bool) -> str:
    text = (at - timedelta(days=offset)).date().isoformat()
    return text[:7] if partial else text


def record_for(at: datetime):
    seconds = st.integers(-3 * 86400, 10 * 86400)
    tests = st.builds(lambda s, kind, result: {
        "type": kind, "result": result, "sampled_at": (at - timedelta(seconds=s)).isoformat()},
        seconds, st.sampled_from(["pcr", "rat", "antibody", "other"]),
        st.sampled_from(["negative", "positive", "inconclusive"]))
    doses = st.builds(lambda offset, partial, number, series: {
        "product": "EU/1/20/1528", "dose_number": number, "series_doses": series,
        "administered_on": day(at, offset, partial)},
        st.integers(-10, 500), st.booleans(), st.integers(1, 4),
        st.one_of(st.none(), st.integers(0, 3)))
    optional_day = st.one_of(st.none(), st.builds(lambda o, p: day(at, o, p),
                                                  st.integers(-30, 400), st.booleans()))
    recoveries = st.builds(lambda first, start, end: {
        "first_positive_on": first, "valid_from": start, "valid_until": end},
        st.builds(lambda o, p: day(at, o, p), st.integers(-30, 400), st.booleans()),
        optional_day, optional_day)
    return st.builds(lambda t, v, r: Record.from_dict({
        "subject": {"name": "Ana Lopes"},
        "evidence": {"tests": t, "vaccinations": v, "recoveries": r}}),
        st.lists(tests, max_size=3), st.lists(doses, max_size=3), st.lists(recoveries,
                                                                           max_size=2))


clocks = st.integers(0, 86400 * 3).map(lambda s: BASE + timedelta(seconds=s))
cases = clocks.flatmap(lambda at: st.tuples(st.just(at), record_for(at)))


def policy_decides(policy: Policy, record: Record, at: datetime) -> bool:
    try:
        policy.apply(record, at)
    except CodeError as error:
        assert error.reason == "policy_refused"
        return False
    return True


def rules_decide(rules: list[dict], record: Record, at: datetime) -> bool:
    data = {"payload": project_all(record), "external": {"validationClock": format_time(at)}}
    results = [parse_rule(rule).program(data) for rule in rules]
    assert all(r is True or r is False for r in results), results
    return all(results)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=policies, case=cases)
def test_exported_rules_decide_exactly_as_the_policy(table, case):
    at, record = case
    policy = Policy.from_table("eu-dcc", table)
    rules = export_policy(policy, valid_from=BASE - timedelta(days=1))
    assert rules_decide(rules, record, at) is policy_decides(policy, record, at)


def test_the_exported_rules_are_eu_rules_one_per_part():
    policy = Policy.from_table("eu-dcc", {
        "grant": [{"status": "green", "evidence": "test", "result": "negative",
                   "within_hours": 48}],
        "require": [{"evidence": "vaccination", "complete": True}]})
    rules = export_policy(policy, country="MO")
    assert [r["Identifier"] for r in rules] == ["GR-MO-0001", "GR-MO-0002"]
    assert all(r["Type"] == "Acceptance" and r["CertificateType"] == "General" for r in rules)
    assert "test negative within 48 h -> green" in rules[0]["Description"][0]["desc"]


@pytest.mark.parametrize("rule, says", [
    ({"evidence": "test", "within_hours": 1.5}, "whole hours"),
    ({"evidence": "vaccination", "min_days": 13.5}, "whole days"),
    ({"evidence": "test", "result": "inconclusive"}, "no code for an inconclusive"),
    ({"evidence": "test", "types": ["pcr", "antibody"]}, "no test type for antibody"),
])
def test_what_certlogic_cannot_say_is_not_exported(rule, says):
    policy = Policy.from_table("eu-dcc", {"require": [rule]})
    with pytest.raises(NotExportable, match=says):
        export_policy(policy)


def test_policies_export_writes_rule_files(tmp_path, redis_server):
    data = tmp_path / "data"
    (data / "policies").mkdir(parents=True)
    (data / "policies" / "eu-dcc.toml").write_text(
        'scheme = "eu-dcc"\n[policy]\n[[policy.grant]]\nstatus = "green"\n'
        'evidence = "vaccination"\ncomplete = true\nmin_days = 14\n')
    env = {"HEALTHCODE_DATA_DIR": str(data), "REDIS_URL": redis_server.url,
           "HEALTHCODE_SUBJECT_SECRET": "export-secret-0123456789",
           "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789"}
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["policies", "export", "--certlogic", "eu-dcc", "--out",
                                       str(out), "--country", "MO"], env=env)
    assert result.exit_code == 0, result.output
    rule = json.loads((out / "GR-MO-0001.json").read_text())
    parse_rule(rule)
    printed = CliRunner().invoke(main, ["policies", "export", "--certlogic", "eu-dcc"], env=env)
    assert json.loads(printed.output)[0]["Logic"] == rule["Logic"]
    missing = CliRunner().invoke(main, ["policies", "export", "--certlogic", "shc"], env=env)
    assert missing.exit_code == 1 and "no policy for 'shc'" in missing.output
