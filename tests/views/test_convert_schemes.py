"""Conversion across scheme families, configured only with files in the data dir: trust, a
policy per scheme, and a signer per target scheme with its own PKI."""
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from healthcode import create_app
from healthcode.record import Record
from healthcode.trust import TrustStore
from mapping import Signer
from mapping.eu_dcc import EUDCCAdapter
from mapping.shc import SHCAdapter



def now():
    """Read when used: a slow test before this one must not age the clock it checks."""
    return datetime.now(timezone.utc)
OUR_SHC_ISSUER = "https://health.example.mo"

EU_DCC_POLICY = """
scheme = "eu-dcc"
[policy]
accept = ["green"]
max_validity_hours = 24
[[policy.grant]]              # a negative test sampled within 48 hours
status = "green"
evidence = "test"
result = "negative"
within_hours = 48
[[policy.grant]]              # a completed vaccination series, 14 to 270 days old
status = "green"
evidence = "vaccination"
complete = true
min_days = 14
max_days = 270
"""

SHC_POLICY = """
scheme = "shc"
[policy]
[[policy.grant]]
status = "green"
evidence = "vaccination"
complete = true
min_days = 14
"""


def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def document_signer():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "MO"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "healthcode test DSC")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now() - timedelta(days=30)).not_valid_after(now() + timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def world(tmp_path, redis_server, redis_client):
    """A deployment that reads EU DCC and SHC, and issues both."""
    data = tmp_path / "data"
    for sub in ("trust", "policies", "signers"):
        (data / sub).mkdir(parents=True)
    dsc_key, dsc = document_signer()
    (data / "signers" / "dsc.key.pem").write_bytes(pem(dsc_key))
    (data / "signers" / "dsc.der").write_bytes(dsc)
    (data / "signers" / "eu-dcc.toml").write_text(
        'key = "dsc.key.pem"\ncertificate = "dsc.der"\nissuer = "MO"\ncountry = "MO"\n')
    (data / "trust" / "our-dsc.der").write_bytes(dsc)

    shc_key = ec.generate_private_key(ec.SECP256R1())
    (data / "signers" / "shc.key.pem").write_bytes(pem(shc_key))
    (data / "signers" / "shc.toml").write_text(
        f'key = "shc.key.pem"\nissuer = "{OUR_SHC_ISSUER}"\n')
    import jwt
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(shc_key.public_key()))
    (data / "trust" / "our-shc.jwks.json").write_text(json.dumps(
        {"issuer": OUR_SHC_ISSUER, "scheme": "shc", "keys": [jwk]}))
    (data / "policies" / "eu-dcc.toml").write_text(EU_DCC_POLICY)
    (data / "policies" / "shc.toml").write_text(SHC_POLICY)

    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(data),
                      "ISSUER": "HC-TEST", "SUBJECT_SECRET": "convert-secret-0123456789",
                      "SECRET_KEY": "test-session-secret-0123",
                      "CREDENTIAL_CACHE_SECONDS": 0})
    store = app.extensions["healthcode.store"]
    tokens = {role: store.create_credential(role)[1]
              for role in ("authority", "partner", "checkpoint")}
    return {"app": app, "client": app.test_client(),
            "headers": {r: {"Authorization": f"Bearer {t}"} for r, t in tokens.items()},
            "dcc_signer": Signer(private_key=dsc_key, kid="", issuer="MO", certificate=dsc,
                                 country="MO"),
            "shc_signer": Signer(private_key=shc_key, kid="", issuer=OUR_SHC_ISSUER),
            "redis": redis_client}


def traveller(tests=(), vaccinations=()):
    return Record.from_dict({
        "subject": {"family_name": "Lopes", "given_name": "Ana", "birth_date": "1990-05-04"},
        "evidence": {"tests": list(tests), "vaccinations": list(vaccinations)}})


def pcr(hours_ago):
    return {"type": "pcr", "result": "negative", "country": "MO",  # a DCC must say where
            "sampled_at": (now() - timedelta(hours=hours_ago)).isoformat()}


def full_series(days_ago):
    return {"product": "EU/1/20/1528", "dose_number": 2, "series_doses": 2,
            "administered_on": (now() - timedelta(days=days_ago)).date().isoformat(),
            "manufacturer": "ORG-100030215", "vaccine_type": "J07BX03", "country": "PT"}


def convert(world, code, to, **extra):
    return world["client"].post("/api/v1/convert", json={"code": code, "to": to, **extra},
                                headers=world["headers"]["partner"])


def verify(world, code):
    return world["client"].post("/api/v1/verify", json={"code": code},
                                headers=world["headers"]["checkpoint"]).get_json()


def test_an_eu_dcc_negative_test_within_48_hours_becomes_a_green_code(world):
    dcc = EUDCCAdapter().encode(traveller(tests=[pcr(20)]), signer=world["dcc_signer"])
    response = convert(world, dcc, "native")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["source_scheme"] == "eu-dcc" and body["record"]["status"] == "green"
    assert any(line.startswith("policy: grant[0]") for line in body["trace"])
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires <= now() + timedelta(hours=24, minutes=1)  # the policy's bound
    answer = verify(world, body["code"])
    assert answer["valid"] and answer["status"] == "green" and answer["checked_online"]


def test_an_old_test_is_refused_naming_the_rule(world):
    dcc = EUDCCAdapter().encode(traveller(tests=[pcr(60)]), signer=world["dcc_signer"])
    response = convert(world, dcc, "native")
    assert response.status_code == 422
    assert response.get_json()["error"] == "policy_refused"
    assert response.get_json()["rule"] == "grant"


def test_an_eu_dcc_scanned_at_a_checkpoint_gets_the_agreements_colour(world):
    dcc = EUDCCAdapter().encode(traveller(vaccinations=[full_series(30)]),
                                signer=world["dcc_signer"])
    answer = verify(world, dcc)
    assert answer["valid"] and answer["scheme"] == "eu-dcc" and answer["status"] == "green"
    assert answer["subject"]["masked_name"] == "A*a L***s"


def test_a_completed_shc_vaccination_series_becomes_a_green_code(world):
    card = SHCAdapter().encode(traveller(vaccinations=[full_series(60)]),
                               signer=world["shc_signer"])
    response = convert(world, card, "native")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["record"]["status"] == "green"


def test_an_incomplete_series_does_not_convert(world):
    first_dose = {**full_series(60), "dose_number": 1}
    card = SHCAdapter().encode(traveller(vaccinations=[first_dose]),
                               signer=world["shc_signer"])
    assert convert(world, card, "native").get_json()["error"] == "policy_refused"


def enrolled_code(world, evidence):
    client, auth = world["client"], world["headers"]["authority"]
    sid = client.post("/api/v1/residents", headers=auth, json={
        "name": "Ana Lopes", "family_name": "Lopes", "given_name": "Ana",
        "birth_date": "1990-05-04", "status": "green", "evidence": evidence,
        "document": {"type": "passport", "number": "P1234567", "region": "PT"}}).get_json()["id"]
    return sid, client.get(f"/api/v1/residents/{sid}/code", headers=auth).get_json()["code"]


def test_our_code_becomes_an_eu_dcc_carrying_the_test(world):
    _, code = enrolled_code(world, {"tests": [pcr(10)]})
    response = convert(world, code, "eu-dcc")
    assert response.status_code == 200, response.get_json()
    dcc = response.get_json()["code"]
    assert dcc.startswith("HC1:")
    trust = TrustStore()
    trust.add_x509(world["dcc_signer"].certificate)
    decoded = EUDCCAdapter().decode(dcc, trust=trust)
    assert decoded.record.subject.family_name == "Lopes"
    assert decoded.record.evidence.tests[0].result == "negative"


def test_a_converted_dcc_is_rendered_at_error_correction_q(world):
    import base64
    from tests.support import decode_qr_result
    _, code = enrolled_code(world, {"tests": [pcr(10)]})
    body = convert(world, code, "eu-dcc", format="png").get_json()
    assert body["qr"]["error_correction"] == "Q"
    scanned = decode_qr_result(base64.b64decode(body["qr"]["data"]))
    assert scanned.text == body["code"] and scanned.ec_level == "Q"


def test_our_code_becomes_an_shc_carrying_the_vaccinations(world):
    _, code = enrolled_code(world, {"vaccinations": [full_series(30)]})
    response = convert(world, code, "shc")
    assert response.status_code == 200, response.get_json()
    card = response.get_json()["code"]
    answer = verify(world, card)
    assert answer["valid"] and answer["scheme"] == "shc" and answer["status"] == "green"


def test_a_scheme_that_cannot_carry_the_facts_refuses(world):
    _, code = enrolled_code(world, {})
    response = convert(world, code, "eu-dcc")
    assert response.status_code == 422
    assert response.get_json()["error"] == "policy_refused"


def test_converting_the_same_code_twice_creates_one_subject(world):
    dcc = EUDCCAdapter().encode(traveller(tests=[pcr(5)]), signer=world["dcc_signer"])
    first = convert(world, dcc, "native").get_json()
    second = convert(world, dcc, "native").get_json()
    sid = first["record"]["subject"]["subject_id"]
    assert second["record"]["subject"]["subject_id"] == sid
    assert len(world["redis"].keys("hc:{*}:st")) == 1
    assert any("already known" in line for line in second["trace"])


def test_conversions_are_audited_without_personal_data(world):
    dcc = EUDCCAdapter().encode(traveller(tests=[pcr(5)]), signer=world["dcc_signer"])
    convert(world, dcc, "native")
    entries = [e[1] for e in world["redis"].xrange("hc:audit")]
    conversions = [e for e in entries if e["action"] == "convert"]
    assert len(conversions) == 1
    assert conversions[0]["source_scheme"] == "eu-dcc"
    text = json.dumps(entries)
    assert "Lopes" not in text and "LOPES" not in text and "1990" not in text


def test_an_expired_signer_is_a_503_naming_the_problem(world):
    _, code = enrolled_code(world, {"tests": [pcr(10)]})
    app = world["app"]
    signers = app.extensions["healthcode.signers"]
    key, _ = document_signer()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired DSC")])
    expired = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now() - timedelta(days=400))
               .not_valid_after(now() - timedelta(days=1)).sign(key, hashes.SHA256()))
    signers["eu-dcc"] = Signer(private_key=key, kid="", issuer="MO", country="MO",
                               certificate=expired.public_bytes(serialization.Encoding.DER))
    response = convert(world, code, "eu-dcc")
    assert response.status_code == 503
    assert response.get_json()["error"] == "signer_unavailable"
