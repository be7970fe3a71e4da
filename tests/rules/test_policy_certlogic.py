"""Conversion agreements in CertLogic: a policy names rule files and expressions beside its TOML
rules; each is listed in the conversion's trace, and the one that says no is named."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from healthcode import create_app
from healthcode.errors import CodeError, ConfigurationError
from healthcode.policy import Policy, load_policy_file
from healthcode.record import Record
from mapping import Signer
from mapping.eu_dcc import EUDCCAdapter
from tests.rules.helpers import PRODUCT_ALLOWED, eu_rule
from tests.views.test_convert_schemes import document_signer, full_series, traveller

AT = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
ADULT = {"not-after": [{"dccDateOfBirth": [{"var": "payload.dob"}]},
                       {"plusTime": [{"var": "external.validationClock"}, -18, "year"]}]}


def vaccinated(birth_date="1990-05-04", product="EU/1/20/1528"):
    return Record.from_dict({
        "subject": {"family_name": "Lopes", "given_name": "Ana", "birth_date": birth_date},
        "evidence": {"vaccinations": [{
            "product": product, "dose_number": 2, "series_doses": 2,
            "administered_on": (AT - timedelta(days=30)).date().isoformat()}]}})


@pytest.fixture
def policy_file(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "VR-AT-0001.json").write_text(json.dumps(
        eu_rule(1, PRODUCT_ALLOWED, en="Only the vaccines of our agreement")))
    path = tmp_path / "eu-dcc.toml"
    path.write_text(f"""
scheme = "eu-dcc"
[policy]
certlogic_rules = ["rules/VR-AT-0001.json"]
[[policy.grant]]
status = "green"
evidence = "vaccination"
complete = true
min_days = 14
[[policy.certlogic]]
name = "adult"
description = "The traveller is 18 or older"
logic = '{json.dumps(ADULT)}'
""")
    return path


def test_every_certlogic_rule_is_in_the_trace(policy_file):
    policy = load_policy_file(policy_file)
    status, _, trace = policy.apply(vaccinated(), AT)
    assert status == "green"
    assert "policy: certlogic VR-AT-0001 1.0.0 passed: Only the vaccines of our agreement" \
        in trace
    assert "policy: certlogic adult 1.0.0 passed: The traveller is 18 or older" in trace


@pytest.mark.parametrize("record, rule", [
    (vaccinated(birth_date="2012"), "certlogic:adult"),
    (vaccinated(product="Sputnik-V"), "certlogic:VR-AT-0001"),
])
def test_the_rule_that_says_no_is_named(policy_file, record, rule):
    with pytest.raises(CodeError) as refused:
        load_policy_file(policy_file).apply(record, AT)
    assert refused.value.reason == "policy_refused" and refused.value.detail["rule"] == rule


def test_what_the_source_cannot_say_refuses_too(policy_file):
    """No product code at all: the agreement's product rule is open, and open is not passed."""
    record = vaccinated(product="http://hl7.org/fhir/sid/cvx#999")
    with pytest.raises(CodeError) as refused:
        load_policy_file(policy_file).apply(record, AT)
    assert "VR-AT-0001 open" in refused.value.message and "v.0.mp" in refused.value.message


@pytest.mark.parametrize("table, says", [
    ({"certlogic_rules": ["nope.json"]}, "no rule file nope.json"),
    ({"certlogic": [{"name": "x", "description": "d", "logic": '{"or": [true]}'}]},
     'unrecognised operator: \\"or\\"'),
    ({"certlogic": [{"name": "x", "description": "d", "logic": "{"}]}, "not JSON"),
    ({"certlogic": [{"name": "x", "logic": True}]}, "description: required"),
])
def test_broken_certlogic_in_a_policy_is_refused_at_load(tmp_path, table, says):
    with pytest.raises(ConfigurationError, match=says):
        Policy.from_table("eu-dcc", table, source=str(tmp_path / "p.toml"))


def test_a_conversion_lists_the_certlogic_rules_it_ran(tmp_path, redis_server, redis_client,
                                                       policy_file):
    data = tmp_path / "data"
    (data / "policies").mkdir(parents=True)
    (data / "policies" / "rules").mkdir()
    (data / "policies" / "rules" / "VR-AT-0001.json").write_text(
        (policy_file.parent / "rules" / "VR-AT-0001.json").read_text())
    (data / "policies" / "eu-dcc.toml").write_text(policy_file.read_text())
    (data / "trust").mkdir()
    key, dsc = document_signer()
    (data / "trust" / "dsc.der").write_bytes(dsc)
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(data),
                      "ISSUER": "HC-TEST", "SUBJECT_SECRET": "policy-secret-0123456789",
                      "SECRET_KEY": "test-session-secret-0123456789",
                      "CREDENTIAL_CACHE_SECONDS": 0})
    _, token = app.extensions["healthcode.store"].create_credential("partner")
    code = EUDCCAdapter().encode(traveller(vaccinations=[full_series(30)]), signer=Signer(
        private_key=key, kid="", issuer="MO", certificate=dsc, country="MO"))
    response = app.test_client().post("/api/v1/convert", json={"code": code, "to": "native"},
                                      headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_json()
    trace = response.get_json()["trace"]
    assert any(line.startswith("policy: certlogic VR-AT-0001 1.0.0 passed") for line in trace)
    assert any(line.startswith("policy: certlogic adult 1.0.0 passed") for line in trace)
