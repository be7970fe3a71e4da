"""Mutual recognition with the example partners (mo, hk, cn), through POST /api/v1/convert:
their codes become ours and ours become theirs, under each agreement's policy."""
import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthcode import create_app
from healthcode.record import Record
from healthcode.trust import TrustStore
from mapping import Signer
from mapping.partner_jwt import PartnerJWTAdapter, load_partners
from mapping.partner_schema import load_mapping

EXAMPLES = Path(__file__).resolve().parents[2] / "mapping" / "partners"
PARTNERS = ("mo", "hk", "cn")
ISSUER = "HC-TEST"


def now():
    return datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="module")
def partner_keys():
    return {p: ec.generate_private_key(ec.SECP256R1()) for p in PARTNERS}


@pytest.fixture
def world(tmp_path, redis_server, redis_client, partner_keys):
    data = tmp_path / "data"
    (data / "mappings").mkdir(parents=True)
    (data / "trust").mkdir()
    mappings = {}
    for partner in PARTNERS:
        shutil.copy(EXAMPLES / f"{partner}.toml", data / "mappings")
        mappings[partner] = load_mapping(EXAMPLES / f"{partner}.toml")
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(partner_keys[partner].public_key()))
        (data / "trust" / f"{partner}.jwks.json").write_text(json.dumps(
            {"issuer": mappings[partner].issuers[0], "scheme": partner,
             "keys": [{**jwk, "kid": f"{partner}-1"}]}))
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(data),
                      "ISSUER": ISSUER, "SUBJECT_SECRET": "partner-secret-0123456789",
                      "SECRET_KEY": "test-session-secret-0123",
                      "CREDENTIAL_CACHE_SECONDS": 0})
    store = app.extensions["healthcode.store"]
    headers = {role: {"Authorization": f"Bearer {store.create_credential(role)[1]}"}
               for role in ("partner", "checkpoint", "authority")}
    return {"app": app, "client": app.test_client(), "headers": headers, "mappings": mappings,
            "data": data, "redis": redis_client}


def partner_code(world, partner, partner_keys, record):
    mapping = world["mappings"][partner]
    signer = Signer(private_key=partner_keys[partner], kid=f"{partner}-1",
                    issuer=mapping.issuers[0])
    return PartnerJWTAdapter(mapping).encode(record, signer=signer)


def record_for(partner, mapping, name="陳大文", latin="CHAN TAI MAN", status="green",
               test_hours_ago=10, birth_date="1980-01-02", number="H1234567"):
    doc_type = sorted(mapping.documents_encode)[0]
    tests = [] if test_hours_ago is None else [{
        "type": "pcr", "result": "negative",
        "sampled_at": (now() - timedelta(hours=test_hours_ago)).isoformat()}]
    return Record.from_dict({
        "subject": {"name": name, "name_latin": latin, "birth_date": birth_date,
                    "document": {"type": doc_type, "number": number,
                                 "region": mapping.region[:2]}},
        "status": status, "evidence": {"tests": tests},
        "provenance": {"scheme": partner, "valid_until": (now() + timedelta(hours=6))}})


def post(world, role, path, body):
    return world["client"].post(path, json=body, headers=world["headers"][role])


def ours_seen_by(world, partner):
    """The partner's side: the same mapping file, trusting our key for our issuer."""
    text = (EXAMPLES / f"{partner}.toml").read_text()
    text = re.sub(r"^issuers = .*$", f'issuers = ["{ISSUER}"]', text, flags=re.M)
    folder = world["data"].parent / f"{partner}-side"
    folder.mkdir(exist_ok=True)
    (folder / f"{partner}.toml").write_text(text)
    adapter = load_partners(folder)[0]
    trust = TrustStore()
    trust.add_jwks(world["app"].extensions["healthcode.keys"].jwks(), issuer=ISSUER,
                   scheme=partner)
    return adapter, trust


@pytest.mark.parametrize("partner", PARTNERS)
def test_a_green_partner_code_becomes_our_code(world, partner_keys, partner):
    code = partner_code(world, partner, partner_keys, record_for(partner,
                                                                 world["mappings"][partner]))
    response = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["source_scheme"] == partner and body["record"]["status"] == "green"
    assert body["trace"][0].startswith(f"decode: {partner} verified")
    answer = post(world, "checkpoint", "/api/v1/verify", {"code": body["code"]}).get_json()
    assert answer["valid"] and answer["status"] == "green" and answer["checked_online"]


@pytest.mark.parametrize("partner", PARTNERS)
def test_partner_codes_verify_at_our_checkpoints(world, partner_keys, partner):
    code = partner_code(world, partner, partner_keys, record_for(partner,
                                                                 world["mappings"][partner]))
    answer = post(world, "checkpoint", "/api/v1/verify", {"code": code}).get_json()
    assert answer["valid"] and answer["scheme"] == partner and answer["status"] == "green"
    assert answer["subject"]["masked_name"] == "陳*文"


@pytest.mark.parametrize("partner, status", [(p, s) for p in PARTNERS for s in ("red",)]
                         + [("mo", "yellow")])
def test_only_green_converts(world, partner_keys, partner, status):
    mapping = world["mappings"][partner]
    code = partner_code(world, partner, partner_keys, record_for(partner, mapping,
                                                                 status=status))
    response = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"})
    assert response.status_code == 422
    assert response.get_json()["error"] == "policy_refused"
    assert response.get_json()["rule"] == "accept"


@pytest.mark.parametrize("partner, hours, converts", [
    ("cn", 47, True), ("cn", 50, False), ("cn", None, False),
    ("hk", 23, True), ("hk", 25, False), ("mo", None, True)])
def test_required_tests_per_agreement(world, partner_keys, partner, hours, converts):
    code = partner_code(world, partner, partner_keys, record_for(
        partner, world["mappings"][partner], test_hours_ago=hours))
    response = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"})
    if converts:
        assert response.status_code == 200, response.get_json()
    else:
        assert response.get_json()["error"] == "policy_refused"
        assert response.get_json()["rule"] == "require[0]"


def test_the_converted_code_never_outlives_the_source_or_the_policy(world, partner_keys):
    mapping = world["mappings"]["cn"]
    record = record_for("cn", mapping, test_hours_ago=40)  # the test window ends in 8 h
    code = partner_code(world, "cn", partner_keys, record)
    body = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"}).get_json()
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires <= now() + timedelta(hours=6)  # the source's own validity ends first


def test_an_untrusted_partner_key_is_refused(world, partner_keys):
    impostor = ec.generate_private_key(ec.SECP256R1())
    mapping = world["mappings"]["mo"]
    code = PartnerJWTAdapter(mapping).encode(
        record_for("mo", mapping),
        signer=Signer(private_key=impostor, kid="mo-1", issuer=mapping.issuers[0]))
    response = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"})
    assert response.get_json()["error"] == "bad_signature"


def test_converting_twice_finds_the_same_subject(world, partner_keys):
    code = partner_code(world, "mo", partner_keys, record_for("mo", world["mappings"]["mo"]))
    first = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"}).get_json()
    second = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"}).get_json()
    assert first["record"]["subject"]["subject_id"] == second["record"]["subject"]["subject_id"]
    assert len(world["redis"].keys("hc:{*}:st")) == 1


def test_a_local_status_wins_over_the_partners(world, partner_keys):
    mapping = world["mappings"]["mo"]
    code = partner_code(world, "mo", partner_keys, record_for("mo", mapping))
    body = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"}).get_json()
    sid = body["record"]["subject"]["subject_id"]
    world["client"].put(f"/api/v1/residents/{sid}/status", headers=world["headers"]["authority"],
                        json={"status": "red", "reason": "close_contact"})
    again = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"}).get_json()
    assert again["record"]["status"] == "red"
    assert any("local status red applies" in line for line in again["trace"])


def test_our_code_into_a_partners_format_without_a_document(world, partner_keys):
    code = partner_code(world, "mo", partner_keys, record_for("mo", world["mappings"]["mo"]))
    native = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"})
    back = post(world, "partner", "/api/v1/convert",
                {"code": native.get_json()["code"], "to": "mo"})
    assert back.status_code == 200, back.get_json()
    adapter, trust = ours_seen_by(world, "mo")
    decoded = adapter.decode(back.get_json()["code"], trust=trust)
    assert decoded.record.subject.name == "陳大文" and decoded.record.status == "green"
    assert decoded.record.subject.document is None  # only a masked number is stored here


def test_a_presented_document_must_belong_to_the_code(world, partner_keys):
    code = partner_code(world, "mo", partner_keys, record_for("mo", world["mappings"]["mo"]))
    native = post(world, "partner", "/api/v1/convert", {"code": code, "to": "native"}).get_json()
    wrong = {"type": "travel_permit", "number": "X0000000", "region": "MO"}
    response = post(world, "partner", "/api/v1/convert",
                    {"code": native["code"], "to": "mo", "document": wrong})
    assert response.get_json()["error"] == "policy_refused"
    assert response.get_json()["rule"] == "document"


names = st.sampled_from(["陳大文", "李明", "歐陽震華", "Ana Lopes", "José da Silva", "Nguyễn Văn A"])
birth_dates = st.sampled_from(["1980-01-02", "1975", "1990-07", "2001-12-31"])
numbers = st.from_regex(r"[A-Z][0-9]{7}", fullmatch=True)


@pytest.mark.parametrize("partner", PARTNERS)
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, birth_date=birth_dates, number=numbers)
def test_round_trip_partner_to_native_and_back(world, partner_keys, partner, name, birth_date,
                                               number):
    """partner code -> our code -> the partner's format: the same person, the same colour."""
    world["redis"].flushdb()
    store = world["app"].extensions["healthcode.store"]
    world["headers"]["partner"] = {
        "Authorization": f"Bearer {store.create_credential('partner')[1]}"}
    mapping = world["mappings"][partner]
    original = record_for(partner, mapping, name=name, latin=None, birth_date=birth_date,
                          number=number)
    native = post(world, "partner", "/api/v1/convert",
                  {"code": partner_code(world, partner, partner_keys, original), "to": "native"})
    assert native.status_code == 200, native.get_json()
    document = original.subject.document
    back = post(world, "partner", "/api/v1/convert", {
        "code": native.get_json()["code"], "to": partner,
        "document": {"type": document.type, "number": document.number,
                     "region": document.region}})
    assert back.status_code == 200, back.get_json()
    adapter, trust = ours_seen_by(world, partner)
    decoded = adapter.decode(back.get_json()["code"], trust=trust).record
    assert decoded.subject.name == original.subject.name
    assert decoded.subject.birth_date == original.subject.birth_date
    assert decoded.subject.document == original.subject.document
    assert decoded.status == original.status
    assert decoded.evidence.tests == original.evidence.tests
