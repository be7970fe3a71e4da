"""Verification through HTTP: the scan worked (200) even when the code did not."""
import pytest

from tests import tokens_util as tu


def code_of(client, creds, sid):
    return client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()["code"]


def verify(client, creds, code):
    response = client.post("/api/v1/verify", json={"code": code}, headers=creds.checkpoint)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_fresh_code_is_valid_and_says_only_what_staff_need(client, creds, enrolled):
    answer = verify(client, creds, code_of(client, creds, enrolled["id"]))
    assert answer["valid"] is True and answer["reason"] is None
    assert answer["status"] == "green" and answer["scheme"] == "native"
    assert answer["subject"] == {"masked_name": "陳*文"}
    assert answer["checked_online"] is True
    assert set(answer) <= {"valid", "reason", "status", "status_version", "scheme", "subject",
                           "issued_at", "expires_at", "checked_online", "message",
                           "warnings"}
    assert answer["warnings"] == []  # no trust source is stale


def test_a_status_change_is_reflected_at_the_next_verify(client, creds, enrolled):
    sid = enrolled["id"]
    code = code_of(client, creds, sid)
    client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
               json={"status": "red", "reason": "positive_test"})
    answer = verify(client, creds, code)
    assert answer["valid"] is False and answer["reason"] == "superseded"
    assert answer["status"] == "red"
    fresh = verify(client, creds, code_of(client, creds, sid))
    assert fresh["valid"] and fresh["status"] == "red"


BAD_CODES = [
    ("tampered", lambda r: tu.tampered(tu.signed(r)), "bad_signature"),
    ("truncated signature", lambda r: tu.truncated_signature(tu.signed(r)), "bad_signature"),
    ("truncated to an odd length", lambda r: tu.signed(r)[:-5], "malformed"),
    ("alg none", tu.unsigned, "bad_signature"),
    ("HS256 with our public key", tu.hs256_with_public_key, "bad_signature"),
    ("unknown kid", lambda r: tu.signed_with_new_key("ZZZZZZZZ"), "unknown_key"),
    ("wrong issuer", lambda r: tu.signed(r, iss="ELSEWHERE"), "untrusted_issuer"),
    ("expired", lambda r: tu.signed(r, iat=1_700_000_000), "expired"),
    ("not yet valid", lambda r: tu.signed(r, iat=4_000_000_000), "not_yet_valid"),
    ("no scheme recognises it", lambda r: "%%%", "unsupported_scheme"),
    ("a broken JWT", lambda r: "eyJhbGciOi.eyJpc3Mi.sig", "malformed"),
]


@pytest.mark.parametrize("make, reason", [(m, r) for _, m, r in BAD_CODES],
                         ids=[i for i, _, _ in BAD_CODES])
def test_bad_codes_are_answered_with_their_reason(app, client, creds, make, reason):
    answer = verify(client, creds, make(app.extensions["healthcode.keys"]))
    assert answer["valid"] is False
    assert answer["reason"] == reason
    assert answer["status"] is None and answer["subject"] is None


@pytest.mark.parametrize("kwargs, status, error", [
    ({"data": "{not json", "content_type": "application/json"}, 400, "not_json"),
    ({"json": {}}, 400, "invalid_field"),
    ({"json": {"code": 42}}, 400, "invalid_field"),
    ({"json": {"code": "e" * 20_000}}, 413, "too_large"),
    ({"data": "x" * 100_000, "content_type": "application/json"}, 413, "too_large"),
])
def test_bad_requests_are_4xx_with_a_reason(client, creds, kwargs, status, error):
    response = client.post("/api/v1/verify", headers=creds.checkpoint, **kwargs)
    assert response.status_code == status
    assert response.get_json()["error"] == error


def test_a_removed_resident_reads_as_revoked(client, creds, enrolled, redis_client):
    code = code_of(client, creds, enrolled["id"])
    redis_client.delete(*redis_client.keys(f"hc:{{{enrolled['id']}}}:*"))
    answer = verify(client, creds, code)
    assert (answer["valid"], answer["reason"]) == (False, "revoked")


def test_key_rotation(app, client, creds, enrolled, redis_client):
    ring = app.extensions["healthcode.keys"]
    ring.reload_interval = 0
    old_kid = ring.active.kid
    old_code = code_of(client, creds, enrolled["id"])

    new_kid = ring.rotate().kid
    redis_client.delete(f"hc:{{{enrolled['id']}}}:code")  # drop the cached code
    new_code = code_of(client, creds, enrolled["id"])
    import jwt
    assert jwt.get_unverified_header(new_code)["kid"] == new_kid != old_kid
    assert verify(client, creds, old_code)["valid"] is True
    assert verify(client, creds, new_code)["valid"] is True
    jwks = client.get("/.well-known/jwks.json").get_json()
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}

    ring.retire(old_kid)
    answer = verify(client, creds, old_code)
    assert (answer["valid"], answer["reason"]) == (False, "unknown_key")
    assert verify(client, creds, new_code)["valid"] is True
    assert {k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]} == \
        {new_kid}


def test_jwks_publishes_public_keys_only(client):
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert keys and all("d" not in k for k in keys)


def test_a_red_code_says_why_as_reason_codes(client, creds, enrolled):
    """The checkpoint shows the same reason line as the resident's page (issue 13.4)."""
    sid = enrolled["id"]
    green = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()
    answer = client.post("/api/v1/verify", json={"code": green["code"]},
                         headers=creds.checkpoint).get_json()
    assert "reasons" not in answer  # green: the verify stays one read
    client.put(f"/api/v1/residents/{sid}/status", json={"status": "red",
                                                         "reason": "close_contact"},
               headers=creds.authority)
    red = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()
    answer = client.post("/api/v1/verify", json={"code": red["code"]},
                         headers=creds.checkpoint).get_json()
    assert answer["valid"] is True and answer["status"] == "red"
    assert answer["reasons"] == ["close_contact"]
    # the older green code is superseded: the current colour and why
    answer = client.post("/api/v1/verify", json={"code": green["code"]},
                         headers=creds.checkpoint).get_json()
    assert answer["reason"] == "superseded" and answer["reasons"] == ["close_contact"]
