"""Redis stopped mid-test: verify degrades to the token alone, writes answer 503 with
Retry-After, and both recover when Redis returns, without restarting the app."""
import time

import pytest

from healthcode import create_app
from tests.conftest import RESIDENT, Credentials
from tests.support import RedisProcess


@pytest.fixture
def own_redis():
    server = RedisProcess()
    server.start()
    yield server
    server.close()


def test_a_store_outage_degrades_verify_and_refuses_writes_until_it_returns(tmp_path,
                                                                           own_redis):
    app = create_app({"REDIS_URL": own_redis.url, "DATA_DIR": str(tmp_path),
                      "SUBJECT_SECRET": "outage-test-secret-0123", "ISSUER": "HC-TEST",
                      "SECRET_KEY": "test-session-secret-0123",
                      "CREDENTIAL_CACHE_SECONDS": 0, "REDIS_TIMEOUT": 0.3})
    client = app.test_client()
    creds = Credentials(app)
    sid = client.post("/api/v1/residents", json=RESIDENT,
                      headers=creds.authority).get_json()["id"]
    code = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()["code"]
    assert client.post("/api/v1/verify", json={"code": code},
                       headers=creds.checkpoint).get_json()["checked_online"] is True

    own_redis.stop()

    answer = client.post("/api/v1/verify", json={"code": code}, headers=creds.checkpoint)
    assert answer.status_code == 200
    assert answer.get_json()["valid"] is True
    assert answer.get_json()["checked_online"] is False
    assert answer.get_json()["status"] == "green"

    write = client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
                       json={"status": "red", "reason": "close_contact"})
    assert write.status_code == 503
    assert write.get_json()["error"] == "store_unavailable"
    assert int(write.headers["Retry-After"]) > 0
    enroll = client.post("/api/v1/residents", headers=creds.authority, json={
        **RESIDENT, "document": {"type": "passport", "number": "P1", "region": "HK"}})
    assert enroll.status_code == 503
    assert client.get("/readyz").status_code == 503

    own_redis.start()  # same port, empty: the data was not persisted in this test server

    assert client.get("/readyz").status_code == 200
    creds = Credentials(app)  # the restarted server lost the credentials it held
    sid = client.post("/api/v1/residents", json=RESIDENT,
                      headers=creds.authority).get_json()["id"]
    changed = client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
                         json={"status": "red", "reason": "close_contact"})
    assert changed.status_code == 200
    answer = client.post("/api/v1/verify", json={"code": code}, headers=creds.checkpoint)
    assert answer.get_json()["checked_online"] is True
    assert answer.get_json()["reason"] == "superseded"


@pytest.fixture
def outage_app(tmp_path, own_redis):
    app = create_app({"REDIS_URL": own_redis.url, "DATA_DIR": str(tmp_path),
                      "SECRET_KEY": "test-session-secret-0123456789",
                      "SUBJECT_SECRET": "outage-test-secret-0123", "ISSUER": "HC-TEST",
                      "CREDENTIAL_CACHE_SECONDS": 0, "CREDENTIAL_OUTAGE_SECONDS": 1.5,
                      "REDIS_TIMEOUT": 0.3})
    return app


def test_a_credential_revoked_before_an_outage_stops_working_within_the_bound(outage_app,
                                                                               own_redis):
    """Issue 11, item 4: a credential checked before the outage works only within
    CREDENTIAL_OUTAGE_SECONDS of its last check, so a revocation just before Redis went down
    holds after that bound; then 503 store_unavailable, never a silent accept."""
    client = outage_app.test_client()
    creds = Credentials(outage_app)
    store = outage_app.extensions["healthcode.store"]
    sid = client.post("/api/v1/residents", json=RESIDENT,
                      headers=creds.authority).get_json()["id"]
    code = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()["code"]
    assert client.post("/api/v1/verify", json={"code": code},
                       headers=creds.checkpoint).status_code == 200
    checked_at = time.monotonic()
    cred_id = creds.token("checkpoint")[3:].split(".")[0]
    assert store.revoke_credential(cred_id)
    own_redis.stop()

    # within the bound the worker cannot know of the revocation: it may still answer
    deadline = checked_at + 1.5
    while time.monotonic() < deadline + 0.3:
        time.sleep(0.1)
    late = client.post("/api/v1/verify", json={"code": code}, headers=creds.checkpoint)
    assert late.status_code == 503, late.get_json()
    assert late.get_json()["error"] == "store_unavailable"
    assert int(late.headers["Retry-After"]) > 0


def test_a_credential_in_use_keeps_working_through_a_short_outage(outage_app, own_redis):
    client = outage_app.test_client()
    creds = Credentials(outage_app)
    client.get("/api/v1/whoami", headers=creds.checkpoint)
    own_redis.stop()
    assert client.get("/api/v1/whoami", headers=creds.checkpoint).status_code == 200


@pytest.mark.parametrize("token", ["garbage", "hc_nothing.here", "hc_abc", "hc_.x",
                                   "hc_0123456789ab.", "x" * 150, "hc_0123456789ab.sec ret"])
def test_a_token_of_the_wrong_shape_is_401_even_during_an_outage(outage_app, own_redis, token):
    client = outage_app.test_client()
    own_redis.stop()
    response = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"] == "unauthorized"


def test_a_well_formed_token_never_seen_is_503_during_an_outage(outage_app, own_redis):
    """It may be genuine (checked by another worker): we cannot tell, so 'try again', not
    'unauthorized' (which would tell a genuine client its credential is gone)."""
    client = outage_app.test_client()
    own_redis.stop()
    response = client.get("/api/v1/whoami",
                          headers={"Authorization": "Bearer hc_0123456789ab." + "A" * 32})
    assert response.status_code == 503
    assert response.get_json()["error"] == "store_unavailable"
