"""Redis stopped mid-test: verify degrades to the token alone, writes answer 503 with
Retry-After, and both recover when Redis returns, without restarting the app."""
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
