"""POST /api/v1/lookup: colour and masked name by identity document, for checkpoints only,
rate-limited per credential and audited without the document number."""
import time

import pytest

from healthcode import create_app
from tests.conftest import Credentials, RESIDENT
from tests.views.test_sessions import meta_csrf, sign_in

DOCUMENT = RESIDENT["document"]


def lookup(client, headers, document=DOCUMENT, **extra):
    return client.post("/api/v1/lookup", json={"document": document, **extra}, headers=headers)


def test_a_lookup_answers_colour_and_masked_name_only(client, creds, enrolled):
    response = lookup(client, creds.checkpoint)
    assert response.status_code == 200
    assert response.get_json() == {"found": True, "status": "green", "masked_name": "陳*文"}


def test_the_document_is_normalised_as_at_enrollment(client, creds, enrolled):
    body = lookup(client, creds.checkpoint, {"type": " Travel_Permit ", "number": "h123-4567",
                                             "region": "mo"}).get_json()
    assert body["found"] is True


def test_an_unknown_document_is_not_found(client, creds, enrolled):
    body = lookup(client, creds.checkpoint, {**DOCUMENT, "number": "H7654321"}).get_json()
    assert body == {"found": False, "status": None, "masked_name": None}


def test_a_status_change_shows_at_the_next_lookup(client, creds, enrolled):
    client.put(f"/api/v1/residents/{enrolled['id']}/status", headers=creds.authority,
               json={"status": "red", "reason": "positive_test"})
    assert lookup(client, creds.checkpoint).get_json() == {
        "found": True, "status": "red", "masked_name": "陳*文",
        "reasons": ["positive_test"]}  # why, as codes: the scanner says it in words


@pytest.mark.parametrize("role, status", [("authority", 403), ("partner", 403),
                                          ("resident", 403), (None, 401)])
def test_only_checkpoints_may_look_up(client, creds, enrolled, role, status):
    headers = {} if role is None else (creds.resident(enrolled["id"]) if role == "resident"
                                       else creds.headers(role))
    response = lookup(client, headers)
    assert response.status_code == status
    assert "masked_name" not in response.get_json()


@pytest.mark.parametrize("body, field", [
    ({}, "document"),
    ({"document": "H1234567"}, "document"),
    ({"document": {"type": "passport", "number": "X1"}}, "document.region"),
    ({"document": {**DOCUMENT, "name": "陳大文"}}, "document.name"),
    ({"document": DOCUMENT, "name": "陳大文"}, "name"),
    ({"document": {**DOCUMENT, "number": ""}}, "document.number"),
])
def test_bad_lookups_are_refused_naming_the_field(client, creds, body, field):
    response = client.post("/api/v1/lookup", json=body, headers=creds.checkpoint)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_field"
    assert response.get_json()["field"] == field


def test_every_lookup_is_audited_without_the_document_number(app, client, creds, enrolled):
    lookup(client, creds.checkpoint)
    lookup(client, creds.checkpoint, {**DOCUMENT, "number": "Z9988776"})
    entries = [e for e in app.extensions["healthcode.store"].audit_entries()
               if e["action"] == "lookup"]
    assert len(entries) == 2
    missed, hit = entries  # newest first
    checkpoint_id = client.get("/api/v1/whoami", headers=creds.checkpoint).get_json()["id"]
    assert hit["actor"] == missed["actor"] == f"checkpoint:{checkpoint_id}"
    assert hit["found"] == "True" and hit["subject"] == enrolled["id"]
    assert missed["found"] == "False" and "subject" not in missed
    assert hit["document_type"] == "travel_permit" and hit["region"] == "MO"
    text = repr(entries)
    for number in ("H1234567", "1234567", "Z9988776", "9988776"):
        assert number not in text


def test_no_lookup_leaves_the_document_number_in_the_store(client, creds, redis_client):
    lookup(client, creds.checkpoint, {**DOCUMENT, "number": "Q5544332"})
    for key in redis_client.keys("*"):
        kind = redis_client.type(key)
        if kind == "string":
            values = [redis_client.get(key)]
        elif kind == "stream":
            values = [repr(redis_client.xrange(key))]
        elif kind == "hash":
            values = [repr(redis_client.hgetall(key))]
        else:
            continue
        assert "5544332" not in key and not any("5544332" in str(v) for v in values)


@pytest.fixture
def limited(tmp_path, redis_server, redis_client):
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                      "DATA_DIR": str(tmp_path / "data"), "SUBJECT_SECRET": "s" * 20,
                      "SECRET_KEY": "test-session-secret-0123",
                      "CREDENTIAL_CACHE_SECONDS": 0, "LOOKUP_RATE": 3})
    # the limit counts per wall-clock minute: do not start a test on the edge of one
    if time.time() % 60 > 57:
        time.sleep(60 - time.time() % 60 + 0.05)
    return app


def test_lookups_are_rate_limited_per_credential(limited):
    client, creds = limited.test_client(), Credentials(limited)
    for _ in range(3):
        assert lookup(client, creds.checkpoint).status_code == 200
    refused = lookup(client, creds.checkpoint)
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert lookup(client, creds.checkpoint).status_code == 429
    # another checkpoint's budget is its own
    other = {"Authorization": f"Bearer {creds.token('checkpoint', subject='x')}"}
    assert lookup(client, other).status_code == 200
    entries = limited.extensions["healthcode.store"].audit_entries()
    assert [e["action"] for e in entries].count("lookup") == 4
    assert [e["action"] for e in entries].count("lookup_rate_limited") == 1  # once a window


def test_a_refused_lookup_is_counted_before_its_body_is_read(limited):
    client, creds = limited.test_client(), Credentials(limited)
    for _ in range(3):
        client.post("/api/v1/lookup", data="not json", headers=creds.checkpoint,
                    content_type="application/json")
    assert lookup(client, creds.checkpoint).status_code == 429


def test_the_scanner_page_looks_up_with_its_cookie_and_csrf_token(client, creds, enrolled):
    sign_in(client, creds.token("checkpoint"), page="checkpoint")
    page = client.get("/checkpoint").get_data(as_text=True)
    assert lookup(client, {}).status_code == 403  # no CSRF header
    response = lookup(client, {"X-CSRF-Token": meta_csrf(page)})
    assert response.status_code == 200 and response.get_json()["found"] is True
