"""Enrollment, status changes and the dynamic code, through HTTP."""
import json

import pytest

from tests.conftest import RESIDENT
from tests.support import decode_qr


def test_enrolling_returns_the_subject_id_and_version_1(enrolled):
    assert enrolled["status"] == "green"
    assert enrolled["status_version"] == 1
    assert enrolled["masked_name"] == "陳*文"
    assert len(enrolled["id"]) == 16


def test_the_document_number_is_not_stored_in_clear(enrolled, redis_client):
    dump = b" ".join(redis_client.dump(k) for k in redis_client.keys("*"))
    assert b"H1234567" not in dump and b"H1****67" not in dump  # the masked one is sealed too
    assert enrolled["record"]["subject"]["document"]["number"] == "H1****67"


def test_keys_carry_a_hash_tag_per_subject(enrolled, redis_client):
    sid = enrolled["id"]
    subject_keys = [k for k in redis_client.keys("hc:{*") if not k.startswith("hc:img")]
    assert subject_keys and all(k.startswith(f"hc:{{{sid}}}:") for k in subject_keys)


def test_enrolling_the_same_document_twice_is_a_conflict(client, creds, enrolled):
    again = {**RESIDENT, "document": {"type": "travel_permit", "number": "h123-4567",
                                      "region": "mo"}}
    response = client.post("/api/v1/residents", json=again, headers=creds.authority)
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"


def test_an_authority_reads_a_resident(client, creds, enrolled):
    body = client.get(f"/api/v1/residents/{enrolled['id']}", headers=creds.authority).get_json()
    assert body["status"] == "green" and body["record"]["subject"]["name"] == "陳大文"


@pytest.mark.parametrize("change, field", [
    ({"status": "blue"}, "status"),
    ({"status": "red", "reasons": []}, "reason"),
    ({"status": "yellow", "reason": "felt_like_it"}, "reasons"),
    ({"name": ""}, "name"),
    ({"document": None}, "document"),
    ({"document": {"type": "passport", "number": "X1"}}, "document.region"),
    ({"document": "H1234567"}, "document"),
    ({"birth_date": "2001-02-30"}, "subject.birth_date"),
    ({"evidence": {"tests": [{"type": "pcr"}]}}, "evidence.tests.result"),
    ({"favourite_colour": "green"}, "favourite_colour"),
])
def test_invalid_enrollments_are_refused_naming_the_field(client, creds, change, field):
    body = {**RESIDENT, **change}
    response = client.post("/api/v1/residents", json=body, headers=creds.authority)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()
    assert error["error"] == "invalid_field"
    assert error["field"] == field


@pytest.mark.parametrize("body, error", [
    ("not json", "not_json"), ("[1, 2]", "not_json"), ("", "not_json"),
])
def test_non_json_bodies_are_refused(client, creds, body, error):
    response = client.post("/api/v1/residents", data=body, headers=creds.authority,
                           content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == error


def test_an_oversized_body_is_refused(client, creds):
    body = {**RESIDENT, "name": "x" * 70_000}
    response = client.post("/api/v1/residents", json=body, headers=creds.authority)
    assert response.status_code == 413
    assert response.get_json()["error"] == "too_large"


def test_a_status_change_is_versioned_and_recorded(app, client, creds, enrolled):
    sid = enrolled["id"]
    response = client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
                          json={"status": "red", "reason": "close_contact"})
    assert response.status_code == 200
    assert response.get_json() == {"id": sid, "status": "red", "status_version": 2,
                                   "previous_status": "green", "reasons": ["close_contact"]}
    history = app.extensions["healthcode.store"].history(sid)
    assert [e["to"] for e in history] == ["green", "red"]
    change = history[-1]
    assert change["from"] == "green" and change["reasons"] == ["close_contact"]
    assert change["actor"].startswith("authority:") and change["version"] == 2
    listed = client.get(f"/api/v1/residents/{sid}/history", headers=creds.authority).get_json()
    assert listed["changes"] == history
    audit = app.extensions["healthcode.store"].audit_entries()[::-1]
    assert [a["action"] for a in audit] == ["enroll", "status_change"]
    assert all("陳" not in json.dumps(a, ensure_ascii=False) for a in audit)


@pytest.mark.parametrize("body", [
    {"status": "yellow"}, {"status": "red", "reason": "unknown_reason"}, {"status": "teal"},
    {"status": "green", "extra": 1},
])
def test_status_changes_need_a_known_reason_for_yellow_and_red(client, creds, enrolled, body):
    response = client.put(f"/api/v1/residents/{enrolled['id']}/status", json=body,
                          headers=creds.authority)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_field"


def test_unknown_residents_are_404(client, creds):
    for sid in ("AAAAAAAAAAAAAAAA", "not-an-id"):
        response = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority)
        assert response.status_code == 404
        assert response.get_json()["error"] == "not_found"


def test_the_code_is_a_short_lived_signed_token(client, creds, enrolled):
    body = client.get(f"/api/v1/residents/{enrolled['id']}/code?format=json",
                      headers=creds.authority).get_json()
    assert body["status"] == "green" and body["status_version"] == 1
    assert body["qr_version"] <= 12
    assert body["code"].count(".") == 2


@pytest.mark.parametrize("fmt, media", [("png", "image/png"), ("svg", "image/svg+xml")])
def test_the_code_renders_as_an_image(client, creds, enrolled, fmt, media):
    sid = enrolled["id"]
    response = client.get(f"/api/v1/residents/{sid}/code?format={fmt}", headers=creds.authority)
    assert response.status_code == 200 and response.mimetype == media
    assert response.headers["Cache-Control"] == "no-store"
    if fmt == "png":
        code = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()
        assert decode_qr(response.data) == code["code"]


def test_images_are_cached_per_token(client, creds, enrolled, redis_client):
    sid = enrolled["id"]
    first = client.get(f"/api/v1/residents/{sid}/code?format=png", headers=creds.authority)
    assert len(redis_client.keys("hc:img:*")) == 1
    second = client.get(f"/api/v1/residents/{sid}/code?format=png", headers=creds.authority)
    assert first.data == second.data


def test_a_status_change_gives_a_new_code_at_the_next_fetch(client, creds, enrolled):
    sid = enrolled["id"]
    before = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()
    client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
               json={"status": "yellow", "reason": "travel_from_risk_area"})
    after = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()
    assert after["code"] != before["code"]
    assert (after["status"], after["status_version"]) == ("yellow", 2)


def test_unknown_image_format_is_a_bad_request(client, creds, enrolled):
    response = client.get(f"/api/v1/residents/{enrolled['id']}/code?format=gif",
                          headers=creds.authority)
    assert response.status_code == 400


def test_one_shot_codes_enroll_no_one(client, creds, redis_client):
    body = {"name": "Ana Lopes", "status": "green", "format": "png", "ttl": 3600,
            "document": {"type": "id_card", "number": "1234567", "region": "MO"}}
    response = client.post("/api/v1/codes", json=body, headers=creds.authority)
    assert response.status_code == 201
    issued = response.get_json()
    import base64
    assert decode_qr(base64.b64decode(issued["qr"]["data"])) == issued["code"]
    assert issued["status_version"] == 0
    assert not redis_client.keys("hc:{*")
    verdict = client.post("/api/v1/verify", json={"code": issued["code"]},
                          headers=creds.checkpoint).get_json()
    assert verdict["valid"] and verdict["status"] == "green" and verdict["checked_online"]


@pytest.mark.parametrize("change", [{"ttl": 5}, {"ttl": "1h"}, {"format": "gif"},
                                    {"status": "red"}])
def test_one_shot_codes_validate_their_input(client, creds, change):
    body = {"name": "Ana Lopes", "status": "green", **change}
    response = client.post("/api/v1/codes", json=body, headers=creds.authority)
    assert response.status_code == 400


def test_the_reason_list_is_published(client):
    reasons = client.get("/api/v1/reasons").get_json()["reasons"]
    assert "close_contact" in {r["code"] for r in reasons}
