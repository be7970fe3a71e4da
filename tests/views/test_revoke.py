"""Revoking one-shot codes: POST /api/v1/codes/revoke, the online answer, and the hash list the
trust bundle publishes (the EU DCC revocation design's SIGNATURE hash type)."""
import base64
import hashlib
import time
from datetime import datetime, timezone

import pytest

from healthcode import revocation
from healthcode.store import REVOKED_INDEX


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
    assert len(raw) == 64  # ES256 raw r || s
    return base64.b64encode(hashlib.sha256(raw).digest()[:16]).decode()


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
    # each key expires with its code: the per-code key at the code's exp, the index at the last
    ttl_short = redis_client.ttl(f"hc:rev:{{{base64.b64decode(expected_hash(short)).hex()}}}")
    assert 0 < ttl_short <= 10
    assert 3500 < redis_client.ttl(REVOKED_INDEX) <= 3600


def test_keys_have_their_own_hash_tags(app, client, creds, redis_client):
    revoke(client, creds, one_shot(client, creds)["code"])
    keys = set(redis_client.scan_iter("hc:*rev*"))
    assert REVOKED_INDEX in keys and REVOKED_INDEX.startswith("hc:{revoked}")
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
    ({"code": "HC1:NCFOXN%TS3DH"}, 400, "invalid_field"),
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
