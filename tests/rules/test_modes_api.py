"""Checkpoint modes end to end through POST /api/v1/verify: an EU DCC signed by a test DSC, the
SMART Health Cards spec's example 00, and our own native code, judged by EU-format rules."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bench.run import install_partner
from healthcode import create_app
from mapping import Signer
from mapping.eu_dcc import EUDCCAdapter
from tests.rules.helpers import (DISEASE_COVID, PRODUCT_ALLOWED, SERIES_COMPLETE, TEST_RECENT,
                                 VACCINATION_RECENT, eu_rule, write_rules)
from tests.support import conformance_dir
from tests.views.test_convert_schemes import (document_signer, full_series, now, pcr,
                                              traveller)

SHC_ISSUER = "https://spec.smarthealth.cards/examples/issuer"

RULES = [
    eu_rule(1, PRODUCT_ALLOWED, en="Only vaccines in the allowed list are accepted",
            de="Nur Impfstoffe der erlaubten Liste werden akzeptiert"),
    eu_rule(2, VACCINATION_RECENT, en="The vaccination is at most 270 days old"),
    eu_rule(3, TEST_RECENT, certificate_type="Test",
            en="The test was taken at most 72 hours ago"),
    eu_rule(1, DISEASE_COVID, certificate_type="General",
            en="The disease targeted is COVID-19 of the value set"),
]

ENTRY_AT = 'description = "Entry into Austria"\ncountry = "AT"\npass_status = "green"\n' \
           '[descriptions]\npt = "Entrada na Áustria"\n'
STRICT = 'description = "Entry with our own series rule"\ncountry = "AT"\n' \
         'extra_rules = ["ours/VR-HC-0009.json"]\n'.replace("HC", "MO")


@pytest.fixture
def world(tmp_path, redis_server, redis_client):
    data = tmp_path / "data"
    write_rules(data / "rules", *RULES)
    (data / "valuesets").mkdir()
    (data / "valuesets" / "disease.json").write_text(json.dumps({
        "valueSetId": "disease-agent-targeted", "valueSetDate": "2021-04-27",
        "valueSetValues": {"840539006": {"display": "COVID-19", "active": True}}}))
    (data / "modes" / "ours").mkdir(parents=True)
    (data / "modes" / "entry-at.toml").write_text(ENTRY_AT)
    (data / "modes" / "strict.toml").write_text(STRICT)
    (data / "modes" / "ours" / "VR-MO-0009.json").write_text(json.dumps(
        eu_rule(9, SERIES_COMPLETE, country="MO", en="The vaccination series is complete")))
    (data / "trust").mkdir()
    partner_code = install_partner(data)  # the example Macau partner (mapping/partners/mo.toml)
    dsc_key, dsc = document_signer()
    (data / "trust" / "dsc.der").write_bytes(dsc)
    shc = conformance_dir("shc")
    (data / "trust" / "shc-example.jwks.json").write_text(json.dumps({
        "issuer": SHC_ISSUER, "scheme": "shc",
        "keys": json.loads((shc / "issuer/.well-known/jwks.json").read_text())["keys"]}))
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(data),
                      "ISSUER": "HC-TEST", "SUBJECT_SECRET": "modes-secret-0123456789",
                      "SECRET_KEY": "test-session-secret-0123456789",
                      "CREDENTIAL_CACHE_SECONDS": 0})
    store = app.extensions["healthcode.store"]
    tokens = {role: store.create_credential(role)[1] for role in ("authority", "checkpoint")}
    tokens["bound"] = store.create_credential("checkpoint", mode="entry-at")[1]
    return {"app": app, "client": app.test_client(), "shc": shc, "partner_code": partner_code,
            "headers": {r: {"Authorization": f"Bearer {t}"} for r, t in tokens.items()},
            "dcc_signer": Signer(private_key=dsc_key, kid="", issuer="MO", certificate=dsc,
                                 country="MO")}


def verify(world, code, mode=None, who="checkpoint", **headers):
    body = {"code": code} if mode is None else {"code": code, "mode": mode}
    response = world["client"].post("/api/v1/verify", json=body,
                                    headers={**world["headers"][who], **headers})
    return response


def results(answer) -> dict:
    return {r["id"]: r["result"] for r in answer["rules"]}


def dcc(world, **evidence) -> str:
    return EUDCCAdapter().encode(traveller(**evidence), signer=world["dcc_signer"])


# -- EU DCC -----------------------------------------------------------------------------------------


def test_an_eu_dcc_that_passes_every_rule_gets_the_modes_colour(world):
    answer = verify(world, dcc(world, vaccinations=[full_series(30)]), "entry-at").get_json()
    assert answer["valid"] is True and answer["status"] == "green"
    assert answer["mode"] == "entry-at" and answer["status_granted_by"] == "mode:entry-at"
    # selection by type: the Test rule does not judge a vaccination certificate
    assert results(answer) == {"GR-AT-0001": "passed", "VR-AT-0001": "passed",
                               "VR-AT-0002": "passed"}
    assert {r["type"] for r in answer["rules"]} == {"Acceptance"}


def test_a_failed_rule_refuses_the_code_with_its_description(world):
    answer = verify(world, dcc(world, vaccinations=[full_series(400)]), "entry-at").get_json()
    assert answer["valid"] is False and answer["reason"] == "policy_refused"
    assert results(answer)["VR-AT-0002"] == "failed"
    assert "at most 270 days old" in answer["message"]
    assert answer["status"] is None


def test_descriptions_come_in_the_requests_language_else_english(world):
    code = dcc(world, vaccinations=[full_series(30)])
    german = verify(world, code, "entry-at", **{"Accept-Language": "de-AT"}).get_json()
    by_id = {r["id"]: r["description"] for r in german["rules"]}
    assert by_id["VR-AT-0001"] == "Nur Impfstoffe der erlaubten Liste werden akzeptiert"
    assert by_id["VR-AT-0002"] == "The vaccination is at most 270 days old"


def test_a_test_certificate_is_judged_by_test_rules(world):
    fresh = verify(world, dcc(world, tests=[pcr(20)]), "entry-at").get_json()
    assert results(fresh) == {"GR-AT-0001": "passed", "TR-AT-0003": "passed"}
    assert fresh["status"] == "green"
    stale = verify(world, dcc(world, tests=[pcr(80)]), "entry-at").get_json()
    assert stale["valid"] is False and results(stale)["TR-AT-0003"] == "failed"


def test_without_a_mode_the_answer_is_unchanged(world):
    answer = verify(world, dcc(world, vaccinations=[full_series(400)])).get_json()
    assert answer["valid"] is True and "rules" not in answer


# -- SMART Health Card -------------------------------------------------------------------------------


def shc_example(world) -> str:
    return (world["shc"] / "example-00-f-qr-code-numeric-value-0.txt").read_text().strip()


def test_an_shc_is_judged_by_the_same_rules_through_its_cvx_codes(world):
    answer = verify(world, shc_example(world), "entry-at").get_json()
    assert answer["scheme"] == "shc"
    # CVX 229 -> EU/1/20/1507 (Spikevax) passes the product rule; the 2022 dose is too old
    assert results(answer)["VR-AT-0001"] == "passed"
    assert results(answer)["VR-AT-0002"] == "failed"
    assert answer["valid"] is False and answer["reason"] == "policy_refused"


def test_what_an_shc_cannot_say_leaves_the_rule_open_not_failed(world):
    """Example 00 has no series size: the series rule is open, and no colour is granted."""
    answer = verify(world, shc_example(world), "strict").get_json()
    by_id = {r["id"]: r for r in answer["rules"]}
    assert by_id["VR-MO-0009"]["result"] == "open"
    assert "v.0.sd" in by_id["VR-MO-0009"]["note"]


# -- our own native code -------------------------------------------------------------------------------


def enroll_and_code(world, sampled_hours_ago: float) -> str:
    client, headers = world["client"], world["headers"]["authority"]
    body = {"name": "陳大文", "birth_date": "1980-01-02",
            "document": {"type": "travel_permit", "number": f"H{int(sampled_hours_ago):07d}",
                         "region": "MO"},
            "status": "green", "reasons": [],
            "evidence": {"tests": [{"type": "pcr", "result": "negative", "sampled_at": (
                now() - timedelta(hours=sampled_hours_ago)).isoformat()}]}}
    created = client.post("/api/v1/residents", json=body, headers=headers)
    assert created.status_code == 201, created.get_json()
    sid = created.get_json()["id"]
    return client.get(f"/api/v1/residents/{sid}/code", headers=headers).get_json()["code"]


def test_a_native_code_is_judged_on_the_residents_evidence(world):
    answer = verify(world, enroll_and_code(world, 10), "entry-at").get_json()
    assert answer["scheme"] == "native" and answer["checked_online"] is True
    assert answer["valid"] is True and answer["status"] == "green"
    assert results(answer) == {"GR-AT-0001": "passed", "TR-AT-0003": "passed"}
    refused = verify(world, enroll_and_code(world, 100), "entry-at").get_json()
    assert refused["valid"] is False and refused["reason"] == "policy_refused"


# -- a partner region's JWT -------------------------------------------------------------------------


def test_a_partner_code_without_evidence_keeps_its_colour_and_shows_the_rule_open(world):
    """Macau's code carries a colour and no evidence: nothing to judge, and nothing refused."""
    answer = verify(world, world["partner_code"], "entry-at").get_json()
    assert answer["scheme"] == "mo" and answer["valid"] is True
    assert answer["status"] == "green" and "status_granted_by" not in answer
    # General rules still judge it; that there is no certificate to judge is shown as open
    assert results(answer) == {"GR-AT-0001": "passed", "evidence": "open"}
    assert answer["warnings"][0]["code"] == "rules_open"


# -- modes and credentials -------------------------------------------------------------------------------


def test_a_bound_credential_applies_its_mode_and_refuses_another(world):
    code = dcc(world, vaccinations=[full_series(30)])
    bound = verify(world, code, who="bound").get_json()
    assert bound["mode"] == "entry-at" and bound["status"] == "green"
    assert verify(world, code, "entry-at", who="bound").status_code == 200
    other = verify(world, code, "strict", who="bound")
    assert other.status_code == 403 and other.get_json()["error"] == "forbidden"


def test_an_unknown_mode_is_a_bad_request(world):
    response = verify(world, dcc(world, vaccinations=[full_series(30)]), "nowhere")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_field"


def test_modes_are_listed_for_scanners(world):
    response = world["client"].get("/api/v1/modes?lang=pt",
                                   headers=world["headers"]["checkpoint"])
    modes = {m["name"]: m for m in response.get_json()["modes"]}
    assert modes["entry-at"]["description"] == "Entrada na Áustria"
    assert modes["strict"]["country"] == "AT"
    whoami = world["client"].get("/api/v1/whoami", headers=world["headers"]["bound"])
    assert whoami.get_json()["mode"] == "entry-at"


def test_the_trust_bundle_carries_the_rules_and_modes_a_checkpoint_applies(world):
    """Issue 12.1: an offline scanner gets the acceptance rules (as published) and the modes."""
    import jwt as pyjwt

    response = world["client"].get("/api/v1/trust/bundle")
    assert response.status_code == 200
    payload = pyjwt.decode(response.get_data(as_text=True), options={"verify_signature": False})
    ids = {rule["Identifier"] for rule in payload["rules"]}
    assert {r["Identifier"] for r in RULES} <= ids and "VR-MO-0009" in ids
    assert set(payload["modes"]) == {"entry-at", "strict"}
    assert payload["modes"]["entry-at"]["country"] == "AT"
    assert payload["modes"]["entry-at"]["descriptions"] == {"pt": "Entrada na Áustria"}
    assert payload["modes"]["strict"]["extra_rules"] == ["VR-MO-0009"]
    again = world["client"].get("/api/v1/trust/bundle",
                                headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304  # built once: the same bundle while nothing changed
