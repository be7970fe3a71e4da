"""Safe retries: Idempotency-Key on enrollment and status changes (IETF draft
httpapi-idempotency-key-header), and the status_version a change expects."""
import threading

import pytest

from tests.conftest import RESIDENT


def key(headers, value):
    return {**headers, "Idempotency-Key": value}


def audit_actions(app):
    return [e["action"] for e in app.extensions["healthcode.store"].audit_entries(1000)]


def test_a_retried_enrollment_returns_the_first_answer_and_changes_nothing(app, client, creds):
    first = client.post("/api/v1/residents", json=RESIDENT, headers=key(creds.authority, "k-1"))
    again = client.post("/api/v1/residents", json=RESIDENT, headers=key(creds.authority, "k-1"))
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert audit_actions(app) == ["enroll"]
    # without the key, the same body is a new request: the resident is already there
    assert client.post("/api/v1/residents", json=RESIDENT,
                       headers=creds.authority).status_code == 409


def test_a_retried_status_change_applies_once(app, client, creds, enrolled):
    url = f"/api/v1/residents/{enrolled['id']}/status"
    body = {"status": "red", "reason": "close_contact"}
    answers = [client.put(url, json=body, headers=key(creds.authority, "c-1")) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert {a.get_json()["status_version"] for a in answers} == {2}
    current = client.get(f"/api/v1/residents/{enrolled['id']}", headers=creds.authority)
    assert current.get_json()["status_version"] == 2
    assert audit_actions(app).count("status_change") == 1


def test_the_same_key_with_another_body_is_refused(client, creds, enrolled):
    url = f"/api/v1/residents/{enrolled['id']}/status"
    client.put(url, json={"status": "red", "reason": "close_contact"},
               headers=key(creds.authority, "c-2"))
    reused = client.put(url, json={"status": "green"}, headers=key(creds.authority, "c-2"))
    assert reused.status_code == 422
    assert reused.get_json()["error"] == "idempotency_key_reused"
    elsewhere = client.post("/api/v1/residents", json=RESIDENT,
                            headers=key(creds.authority, "c-2"))
    assert elsewhere.status_code == 422  # another path is another request too


def test_keys_are_per_credential(app, client, creds):
    store = app.extensions["healthcode.store"]
    _, other = store.create_credential("authority", label="second authority")
    first = client.post("/api/v1/residents", json=RESIDENT, headers=key(creds.authority, "k"))
    second = client.post("/api/v1/residents", json=RESIDENT, headers={
        "Authorization": f"Bearer {other}", "Idempotency-Key": "k"})
    assert first.status_code == 201 and second.status_code == 409  # a new request for them


def test_a_refusal_is_kept_too(client, creds, enrolled):
    url = f"/api/v1/residents/{enrolled['id']}/status"
    bad = {"status": "red"}  # no reason
    first = client.put(url, json=bad, headers=key(creds.authority, "c-3"))
    again = client.put(url, json=bad, headers=key(creds.authority, "c-3"))
    assert first.status_code == again.status_code == 400
    assert again.get_json() == first.get_json()


def test_keys_are_kept_24_hours_under_their_own_hash_tag(client, creds, redis_client):
    client.post("/api/v1/residents", json=RESIDENT, headers=key(creds.authority, "k-ttl"))
    (name,) = redis_client.keys("hc:idem:*")
    assert name.startswith("hc:idem:{") and name.endswith("}")
    assert 86_000 < redis_client.ttl(name) <= 86_400


@pytest.mark.parametrize("value", ["", "x" * 256, "clé", "a\tb"])
def test_unusable_keys_are_a_bad_request(client, creds, value):
    response = client.post("/api/v1/residents", json=RESIDENT,
                           headers=key(creds.authority, value))
    assert response.status_code == 400
    assert response.get_json()["field"] == "Idempotency-Key"


def test_a_quoted_key_is_the_same_key(client, creds):
    client.post("/api/v1/residents", json=RESIDENT, headers=key(creds.authority, "k-q"))
    again = client.post("/api/v1/residents", json=RESIDENT, headers=key(creds.authority, '"k-q"'))
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"


def test_concurrent_duplicates_do_not_both_apply(app, creds, enrolled):
    url = f"/api/v1/residents/{enrolled['id']}/status"
    body = {"status": "yellow", "reason": "symptoms"}
    headers = key(creds.authority, "race")
    barrier = threading.Barrier(8)
    answers = []

    def send():
        client = app.test_client()
        barrier.wait()
        answers.append(client.put(url, json=body, headers=headers))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 409} and 200 in codes
    for a in answers:
        if a.status_code == 409:
            assert a.get_json()["error"] == "idempotency_key_in_use"
        else:
            assert a.get_json()["status_version"] == 2
    current = app.test_client().get(f"/api/v1/residents/{enrolled['id']}",
                                    headers=creds.authority).get_json()
    assert current["status_version"] == 2


def test_a_retry_while_the_first_is_in_progress_is_409(app, client, creds):
    from healthcode import idempotency

    store = app.extensions["healthcode.store"]
    cred_id = client.get("/api/v1/whoami", headers=creds.authority).get_json()["id"]
    with app.test_request_context("/api/v1/residents", method="POST", json=RESIDENT):
        fingerprint = idempotency._fingerprint()
    store.idempotency_reserve(cred_id, "slow", {"state": "pending", "fp": fingerprint}, 60)
    response = client.post("/api/v1/residents", json=RESIDENT,
                           headers=key(creds.authority, "slow"))
    assert response.status_code == 409
    assert response.get_json()["error"] == "idempotency_key_in_use"


# -- expected status versions -----------------------------------------------------------------

def test_a_change_at_the_expected_version_applies(client, creds, enrolled):
    response = client.put(f"/api/v1/residents/{enrolled['id']}/status", headers=creds.authority,
                          json={"status": "red", "reason": "close_contact",
                                "status_version": 1})
    assert response.status_code == 200 and response.get_json()["status_version"] == 2


def test_a_change_after_the_status_moved_on_is_a_conflict(app, client, creds, enrolled):
    url = f"/api/v1/residents/{enrolled['id']}/status"
    client.put(url, headers=creds.authority, json={"status": "red", "reason": "close_contact"})
    stale = client.put(url, headers=creds.authority,
                       json={"status": "green", "reason": "negative_test", "status_version": 1})
    assert stale.status_code == 409
    assert stale.get_json() | {"message": ""} == {
        "error": "conflict", "message": "", "status": "red", "status_version": 2}
    current = client.get(f"/api/v1/residents/{enrolled['id']}", headers=creds.authority)
    assert current.get_json()["status"] == "red"
    assert audit_actions(app).count("status_change") == 1


@pytest.mark.parametrize("version", [0, -1, "1", 1.5, True, 2**60])
def test_an_unusable_expected_version_is_a_bad_request(client, creds, enrolled, version):
    response = client.put(f"/api/v1/residents/{enrolled['id']}/status", headers=creds.authority,
                          json={"status": "green", "status_version": version})
    assert response.status_code == 400
    assert response.get_json()["field"] == "status_version"


def test_an_expected_version_of_an_unknown_resident_is_404(client, creds):
    response = client.put("/api/v1/residents/AAAAAAAAAAAAAAAA/status", headers=creds.authority,
                          json={"status": "green", "status_version": 1})
    assert response.status_code == 404
