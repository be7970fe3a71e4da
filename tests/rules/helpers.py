"""Rule files for tests, in the EU format, and a deployment that reads them."""
from __future__ import annotations

import json
from pathlib import Path

PREFIX = {"General": "GR", "Vaccination": "VR", "Test": "TR", "Recovery": "RR"}


def eu_rule(number: int, logic, *, certificate_type="Vaccination", country="AT",
            rule_type="Acceptance", version="1.0.0", valid_from="2021-01-01T00:00:00Z",
            valid_to="2030-01-01T00:00:00Z", en="A rule written for the tests here",
            **descriptions) -> dict:
    prefix = "IR" if rule_type == "Invalidation" else PREFIX[certificate_type]
    if logic is True or logic is False:  # Logic must be an operation: the EU's idiom for both
        logic = {"===": [1, 1 if logic else 0]}
    return {"Identifier": f"{prefix}-{country}-{number:04d}", "Type": rule_type,
            "Country": country, "Version": version, "SchemaVersion": "1.0.0",
            "Engine": "CERTLOGIC", "EngineVersion": "1.3.3", "CertificateType": certificate_type,
            "Description": [{"lang": "en", "desc": en}] + [
                {"lang": lang, "desc": text} for lang, text in descriptions.items()],
            "ValidFrom": valid_from, "ValidTo": valid_to, "AffectedFields": [],
            "Logic": logic}


def write_rules(folder: Path, *rules: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for rule in rules:
        (folder / f"{rule['Identifier']}_{rule['Version']}.json").write_text(json.dumps(rule))


# the EU's own idioms, as the published rules write them
def in_last_days(field: str, days: int) -> dict:
    """``field`` (a date) is at most ``days`` before the validation clock."""
    return {"not-after": [{"plusTime": [{"var": "external.validationClock"}, 0, "day"]},
                          {"plusTime": [{"var": field}, days, "day"]}]}


def guarded(group: str, logic) -> dict:
    """Only when the certificate has that group (``payload.v.0``), as EU rules are written."""
    return {"if": [{"var": f"payload.{group}.0"}, logic, True]}


PRODUCT_ALLOWED = guarded("v", {"in": [{"var": "payload.v.0.mp"},
                                       ["EU/1/20/1528", "EU/1/20/1507"]]})
SERIES_COMPLETE = guarded("v", {">=": [{"var": "payload.v.0.dn"}, {"var": "payload.v.0.sd"}]})
VACCINATION_RECENT = guarded("v", in_last_days("payload.v.0.dt", 270))
TEST_RECENT = guarded("t", {"before": [
    {"plusTime": [{"var": "external.validationClock"}, 0, "hour"]},
    {"plusTime": [{"var": "payload.t.0.sc"}, 72, "hour"]}]})
DISEASE_COVID = {"if": [{"var": "payload.v.0"},
                        {"in": [{"var": "payload.v.0.tg"},
                                {"var": "external.valueSets.disease-agent-targeted"}]}, True]}
