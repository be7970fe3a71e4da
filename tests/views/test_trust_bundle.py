"""GET /api/v1/trust/bundle: one signed JWS with what an offline scanner needs; stale trust is
reported by /readyz and in every verify answer."""
from __future__ import annotations

import base64
import json
import shutil
import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from healthcode import create_app
from healthcode.trust.bundle import build_bundle, signature_hash
from tests.support import conformance_dir
from tests.trust import pki


@pytest.fixture
def loaded_app(tmp_path, redis_server, redis_client):
    """An app whose trust folder holds the shared real lists and a test SHC revocation list."""
    shared = conformance_dir("trustlists")
    trust = tmp_path / "data" / "trust"
    trust.mkdir(parents=True)
    for name in ("de-dsc-list.json", "se-dsc-list.json", "vci-snapshot.json"):
        shutil.copy(shared / name, trust / name)
    return create_app({
        "TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path / "data"),
        "ISSUER": "HC-TEST", "SUBJECT_SECRET": "test-subject-secret-0123456789",
        "SECRET_KEY": "test-session-secret-0123456789",
        "CREDENTIAL_CACHE_SECONDS": 0, "TRUST_MAX_AGE_DAYS": 30,
    })


def fetch(client, **headers):
    return client.get("/api/v1/trust/bundle", headers=headers)


def verified(app, token: str) -> dict:
    """What a scanner does: check the JWS with our published JWKS, then nbf/exp."""
    jwks = app.test_client().get("/.well-known/jwks.json").get_json()
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    return jwt.decode(token, key.key, algorithms=["ES256"], options={"require": ["exp", "nbf",
                                                                              "iat"]})


def test_the_bundle_is_a_jws_signed_with_our_active_key(app, client):
    response = fetch(client)
    assert response.status_code == 200
    assert response.mimetype == "application/jose"
    token = response.get_data(as_text=True)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["typ"] == "hc-trust-bundle+jwt"
    assert header["kid"] == app.extensions["healthcode.keys"].active.kid
    payload = verified(app, token)
    assert payload["iss"] == "HC-TEST" and payload["bundle_version"] == 1
    assert payload["keys"] == client.get("/.well-known/jwks.json").get_json()
    for section in ("issuers", "certificates", "shc_revocations", "rules"):
        assert payload[section] == []
    assert payload["modes"] == {} and payload["warnings"] == []
    assert payload["revocations"] == {"hash_type": "SIGNATURE", "hashes": []}


def test_a_tampered_bundle_does_not_verify(app, client):
    token = fetch(client).get_data(as_text=True)
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["certificates"] = [{"kid": "AAAAAAAAAAA=", "der": "AA=="}]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verified(app, f"{head}.{forged}.{sig}")


def test_its_lifetime_is_configured_and_checked(app, client):
    payload = verified(app, fetch(client).get_data(as_text=True))
    assert payload["nbf"] == payload["iat"] <= time.time()
    assert payload["exp"] - payload["iat"] == 86400
    # at least three quarters of the lifetime are left whenever it is served
    assert payload["exp"] - time.time() >= 0.75 * 86400 - 5
    expired = build_bundle(app.extensions["healthcode.trust"], app.extensions["healthcode.keys"],
                           {**app.config, "TRUST_BUNDLE_TTL": 300},
                           now=datetime.now(timezone.utc) - timedelta(hours=1))
    with pytest.raises(jwt.ExpiredSignatureError):
        verified(app, expired.token)


def test_gzip_when_the_scanner_accepts_it(loaded_app):
    import gzip

    client = loaded_app.test_client()
    plain = fetch(client)
    packed = fetch(client, **{"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.get_data()) == plain.get_data()
    assert len(packed.get_data()) < len(plain.get_data()) / 2
    assert packed.headers["ETag"] == plain.headers["ETag"]
    assert "Accept-Encoding" in packed.headers["Vary"]


def test_etag_and_if_none_match(app, client):
    first = fetch(client)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    again = fetch(client, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == etag
    assert fetch(client, **{"If-None-Match": 'W/"something-else"'}).status_code == 200
    # a revocation changes the bundle, and so its ETag
    store = app.extensions["healthcode.store"]
    store.revoke_signature_hash(signature_hash(b"\x01" * 64), time.time() + 600)
    changed = fetch(client, **{"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_revoked_codes_are_listed_by_signature_hash_until_they_expire(app, client):
    store = app.extensions["healthcode.store"]
    live, gone = b"\x02" * 64, b"\x03" * 64
    store.revoke_signature_hash(signature_hash(live), time.time() + 600)
    store.revoke_signature_hash(signature_hash(gone), time.time() - 1)
    payload = verified(app, fetch(client).get_data(as_text=True))
    assert payload["revocations"]["hashes"] == [signature_hash(live)]
    assert len(base64.b64decode(signature_hash(live))) == 16


def test_the_signature_hash_ignores_the_malleable_half_of_an_ecdsa_signature():
    r, s = b"\x05" * 32, b"\x06" * 32
    assert signature_hash(r + s) == signature_hash(r + b"\x07" * 32)
    assert signature_hash(r + s, ecdsa=False) != signature_hash(r + b"\x07" * 32, ecdsa=False)


def test_built_once_and_served_from_cache(app, client, monkeypatch):
    from healthcode.trust import bundle as module

    calls = []
    real = module.build_bundle
    monkeypatch.setattr(module, "build_bundle", lambda *a, **k: calls.append(1) or real(*a, **k))
    tokens = {fetch(client).get_data(as_text=True) for _ in range(5)}
    assert len(calls) == 1 and len(tokens) == 1


def test_no_private_material(loaded_app, tmp_path):
    # a partner who sent its private key by mistake: the trust folder keeps the public part
    key = pki.new_key()
    leaked = {**pki.jwk(key, "oops"), "d": "c2VjcmV0"}
    (tmp_path / "data" / "trust" / "partner.jwks.json").write_text(json.dumps(
        {"issuer": "https://partner.example", "scheme": "mo", "keys": [leaked]}))
    loaded_app = create_app({**{k: loaded_app.config[k] for k in (
        "TESTING", "REDIS_URL", "DATA_DIR", "ISSUER", "SUBJECT_SECRET", "SECRET_KEY")}})
    token = fetch(loaded_app.test_client()).get_data(as_text=True)
    payload = verified(loaded_app, token)

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    private = {"d", "p", "q", "dp", "dq", "qi", "k"}
    assert private.isdisjoint(set(walk(payload)))
    partner = next(i for i in payload["issuers"] if i["iss"] == "https://partner.example")
    assert [k["kid"] for k in partner["keys"]] == ["oops"]
    assert b"PRIVATE KEY" not in base64.urlsafe_b64decode(token.split(".")[1] + "==")


def test_with_the_shared_lists_loaded(loaded_app):
    response = fetch(loaded_app.test_client())
    payload = verified(loaded_app, response.get_data(as_text=True))
    shared = conformance_dir("trustlists")
    now = time.time()
    # only unexpired EU DCC signers, with kid and country
    de = json.loads((shared / "de-dsc-list.json").read_text())["certificates"]
    from healthcode.certs import load_certificate
    unexpired = {e["kid"] for e in de
                 if load_certificate(base64.b64decode(e["rawData"])).not_after.timestamp()
                 > payload["iat"]}
    assert {c["kid"] for c in payload["certificates"]} == unexpired
    assert len(payload["certificates"]) == len(unexpired) < len(de)
    by_kid = {e["kid"]: e for e in de}
    for cert in payload["certificates"]:
        assert cert["der"] == by_kid[cert["kid"]]["rawData"]
        assert cert["country"] == by_kid[cert["kid"]]["country"]
    # SHC issuers by issuer, with canonical_iss where the directory gives one
    issuers = {i["iss"]: i for i in payload["issuers"]}
    assert len(issuers) == 650
    assert sum(len(i["keys"]) for i in issuers.values()) == 961
    aliased = [i for i in issuers.values() if "canonical_iss" in i]
    assert len(aliased) == 6 and all(i["scheme"] == "shc" for i in aliased)
    assert issuers["https://myvaccinerecord.cdph.ca.gov/creds"]["name"] == "State of California"
    assert "HC-TEST" not in issuers  # our keys are under "keys"
    assert {r["iss"] for r in payload["shc_revocations"]} <= set(issuers)
    assert [s["name"] for s in payload["sources"]] == ["de-dsc-list.json", "se-dsc-list.json",
                                                     "vci-snapshot.json"]
    # the snapshot is over 30 days old: the bundle carries the warning
    assert [w["code"] for w in payload["warnings"]] == ["stale_trust_source"]
    assert now - payload["iat"] < 86400


def test_stale_trust_in_readyz_and_every_verify_answer(loaded_app):
    client = loaded_app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200  # reported, never a reason to stop verifying
    body = ready.get_json()
    assert [s["name"] for s in body["trust"]["stale_sources"]] == ["vci-snapshot.json"]
    assert body["warnings"][0]["code"] == "stale_trust_source"
    store = loaded_app.extensions["healthcode.store"]
    _, token = store.create_credential("checkpoint", label="gate")
    for code in ("%%%", "HC1:not-a-real-code"):
        answer = client.post("/api/v1/verify", json={"code": code},
                             headers={"Authorization": f"Bearer {token}"}).get_json()
        assert answer["valid"] is False
        assert [w["code"] for w in answer["warnings"]] == ["stale_trust_source"]
        assert "vci-snapshot.json" in answer["warnings"][0]["message"]


def test_the_cli_writes_the_same_bundle(tmp_path, redis_server, redis_client):
    from click.testing import CliRunner

    from healthcode.cli import main

    env = {"HEALTHCODE_DATA_DIR": str(tmp_path / "data"), "HEALTHCODE_ISSUER": "HC-CLI",
           "HEALTHCODE_SUBJECT_SECRET": "cli-secret-0123456789",
           "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789", "REDIS_URL": redis_server.url}
    runner = CliRunner()
    assert runner.invoke(main, ["keys", "generate"], env=env).exit_code == 0
    dsc, _ = pki.dsc("UT")
    source = tmp_path / "dsc.json"
    source.write_bytes(pki.dsc_list([(dsc, "UT")]))
    assert runner.invoke(main, ["trust", "import", str(source)], env=env).exit_code == 0
    out = tmp_path / "bundle.jws"
    result = runner.invoke(main, ["trust", "bundle", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    token = out.read_text()
    from healthcode.keys import KeyRing
    ring = KeyRing(tmp_path / "data" / "keys")
    payload = jwt.decode(token, ring.active.public_key, algorithms=["ES256"])
    assert [c["kid"] for c in payload["certificates"]] == [pki.dcc_kid(dsc)]
    assert payload["certificates"][0]["country"] == "UT"
    assert payload["keys"] == ring.jwks()
    assert payload["revocations"]["hashes"] == []
