"""Revoking one-shot codes: POST /api/v1/codes/revoke, the online answer, and the hash list the
trust bundle publishes (the EU DCC revocation design's SIGNATURE hash type)."""
import base64
import hashlib
import time
from datetime import datetime, timezone

import pytest

from healthcode import revocation
from healthcode.store import REVOKED_SIGNATURES


def one_shot(client, creds, ttl=3600, **extra):
    body = {"name": "Maria Santos", "status": "green", "ttl": ttl, **extra}
    response = client.post("/api/v1/codes", json=body, headers=creds.authority)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def revoke(client, creds, code, role="authority"):
    return client.post("/api/v1/codes/revoke", json={"code": code}, headers=creds.headers(role))


def verify(client, creds, code):
    response = client.post("/api/v1/verify", json={"code": code}, headers=creds.checkpoint)
    assert response.status_code == 200
    return response.get_json()


def expected_hash(code: str) -> str:
    signature = code.split(".")[2]
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert len(raw) == 64  # ES256 raw r || s: the hash covers r (the EU design, for ECDSA)
    return base64.b64encode(hashlib.sha256(raw[:32]).digest()[:16]).decode()


def test_a_revoked_one_shot_code_verifies_as_revoked(client, creds):
    code = one_shot(client, creds)["code"]
    assert verify(client, creds, code)["valid"] is True
    response = revoke(client, creds, code)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["revoked"] is True and body["hash_type"] == "SIGNATURE"
    assert body["hash"] == expected_hash(code)
    answer = verify(client, creds, code)
    assert (answer["valid"], answer["reason"], answer["checked_online"]) == \
        (False, "revoked", True)
    # another one-shot code of the same person is untouched
    other = one_shot(client, creds)["code"]
    assert verify(client, creds, other)["valid"] is True


def test_revoking_twice_changes_nothing(app, client, creds):
    code = one_shot(client, creds)["code"]
    first = revoke(client, creds, code).get_json()
    second = revoke(client, creds, code).get_json()
    assert first == second
    with app.app_context():
        assert revocation.current_hashes() == [first["hash"]]


def test_the_list_holds_unexpired_revocations_only(app, client, creds, redis_client):
    short = one_shot(client, creds, ttl=10)["code"]
    long = one_shot(client, creds, ttl=3600)["code"]
    for code in (short, long):
        assert revoke(client, creds, code).status_code == 200
    with app.app_context():
        assert sorted(revocation.current_hashes()) == sorted(map(expected_hash, (short, long)))
        later = revocation.current_hashes(
            now=datetime.fromtimestamp(time.time() + 60, timezone.utc))
        assert later == [expected_hash(long)]
    # the online key expires with its code; the bundle's list scores each by its expiry
    ttl_short = redis_client.ttl(f"hc:rev:{{{base64.b64decode(expected_hash(short)).hex()}}}")
    assert 0 < ttl_short <= 10
    assert redis_client.zscore(REVOKED_SIGNATURES, expected_hash(short)) <= time.time() + 10


def test_keys_have_their_own_hash_tags(app, client, creds, redis_client):
    revoke(client, creds, one_shot(client, creds)["code"])
    keys = set(redis_client.scan_iter("hc:*rev*"))
    assert REVOKED_SIGNATURES in keys and REVOKED_SIGNATURES.startswith("hc:{revoked}")
    assert all("{" in key and "}" in key for key in keys)


def test_a_dynamic_code_is_not_revoked_but_its_status_changed(client, creds, enrolled):
    code = client.get(f"/api/v1/residents/{enrolled['id']}/code",
                      headers=creds.authority).get_json()["code"]
    response = revoke(client, creds, code)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_field"
    assert "status" in response.get_json()["message"]


@pytest.mark.parametrize("body, status, error", [
    ({}, 400, "invalid_field"),
    ({"code": 42}, 400, "invalid_field"),
    ({"code": "HC1:NCFOXN%TS3DH"}, 422, "unsupported_scheme"),  # a code, not one of ours
    ({"code": "e" * 20_000}, 400, "invalid_field"),
    ({"code": "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"}, 422, "unknown_key"),
])
def test_bad_revocations_are_4xx_with_a_reason(client, creds, body, status, error):
    response = client.post("/api/v1/codes/revoke", json=body, headers=creds.authority)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"] == error


def test_a_tampered_code_cannot_be_revoked(client, creds):
    code = one_shot(client, creds)["code"]
    response = revoke(client, creds, code[:-4] + ("AAAA" if code[-4:] != "AAAA" else "BBBB"))
    assert response.status_code == 422
    assert response.get_json()["error"] == "bad_signature"


def test_only_an_authority_revokes(client, creds):
    code = one_shot(client, creds)["code"]
    assert revoke(client, creds, code, role="checkpoint").status_code == 403
    assert client.post("/api/v1/codes/revoke", json={"code": code}).status_code == 401
    assert verify(client, creds, code)["valid"] is True


def test_revocation_is_audited_without_personal_data(app, client, creds):
    code = one_shot(client, creds)["code"]
    body = revoke(client, creds, code).get_json()
    entry = app.extensions["healthcode.store"].audit_entries(1)[0]
    assert entry["action"] == "code_revoke" and entry["hash"] == body["hash"]
    assert "Maria" not in str(entry) and code not in str(entry)


def test_a_re_signed_revoked_code_is_still_revoked(app, client, creds):
    """ECDSA is malleable: (r, n - s) verifies too. The hash covers r, so the twin is caught."""
    from cryptography.hazmat.primitives.asymmetric import ec

    code = one_shot(client, creds)["code"]
    revoke(client, creds, code)
    header, payload, signature = code.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    order = ec.SECP256R1().key_size and int(
        "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
    s_twin = (order - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    twin = ".".join([header, payload, base64.urlsafe_b64encode(raw[:32] + s_twin)
                     .decode().rstrip("=")])
    answer = verify(client, creds, twin)
    assert answer["reason"] in ("revoked", "bad_signature")
    assert answer["valid"] is False


def test_the_bundle_lists_revoked_codes(app, client, creds):
    import jwt

    code = one_shot(client, creds)["code"]
    before = client.get("/api/v1/trust/bundle")
    revoke(client, creds, code)
    after = client.get("/api/v1/trust/bundle", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200  # the list changed: a new bundle, not a 304
    payload = jwt.decode(after.get_data(as_text=True), options={"verify_signature": False})
    assert payload["revocations"] == {"hash_type": "SIGNATURE", "hashes": [expected_hash(code)]}
