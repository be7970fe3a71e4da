"""No acknowledged write is lost when a primary fails: where the deployment has replicas, a
write answers only after WAIT saw a replica take it, else 503 with Retry-After; a retry with
the same Idempotency-Key then answers the first write once the replica has it.

Against a real primary and replica started here. The replica is frozen with SIGSTOP, so its
link stays up but it acknowledges nothing: a WAIT sent on any connection but the one that
wrote would still count it (it acknowledged every earlier offset), so a 503 here also shows
the WAIT went with the write.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager

import pytest
import redis

from healthcode import create_app, embedded_redis
from healthcode.errors import StoreUnavailable
from tests.conftest import RESIDENT
from tests.support import free_port, replication_confirms


def start_redis(*extra) -> tuple[subprocess.Popen, int, str]:
    port = free_port()
    folder = tempfile.mkdtemp(prefix="healthcode-repl-")
    proc = subprocess.Popen([embedded_redis.binary(), "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder,
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    client.close()
    return proc, port, folder


@pytest.fixture(scope="module")
def replicated():
    primary, primary_port, d1 = start_redis()
    replica, replica_port, d2 = start_redis("--replicaof", "127.0.0.1", str(primary_port))
    client = redis.Redis(port=primary_port, decode_responses=True)
    deadline = time.monotonic() + 30
    replica_client = redis.Redis(port=replica_port, decode_responses=True)

    def in_sync():  # connected, past its initial sync, and confirming a write
        primary_side = client.info("replication").get("slave0", {})
        return (primary_side.get("state") == "online" and replica_client.info(
            "replication").get("master_link_status") == "up" and replication_confirms(client))

    while not in_sync():
        assert time.monotonic() < deadline, "the replica did not connect"
        time.sleep(0.05)
    yield {"primary": client, "url": f"redis://127.0.0.1:{primary_port}/0",
           "replica": replica_client,
           "replica_proc": replica}
    for proc in (replica, primary):
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)
    for folder in (d1, d2):
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def frozen(replicated):
    replicated["replica_proc"].send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        replicated["replica_proc"].send_signal(signal.SIGCONT)
        time.sleep(0.2)  # let it catch up


def make_app(tmp_path, replicated, **config):
    replicated["primary"].flushall()
    return create_app({"TESTING": True, "REDIS_URL": replicated["url"],
                       "DATA_DIR": str(tmp_path / "data"), "ISSUER": "HC-TEST",
                       "SUBJECT_SECRET": "test-subject-secret-0123456789",
                       "SECRET_KEY": "test-session-secret-0123456789",
                       "CREDENTIAL_CACHE_SECONDS": 0, "WAIT_TIMEOUT": 150, **config})


def waits(replicated) -> int:
    return int(replicated["primary"].info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_the_default_waits_for_one_replica_where_there_are_replicas(tmp_path, replicated,
                                                                   redis_server):
    store = make_app(tmp_path, replicated).extensions["healthcode.store"]
    assert store.wait_replicas() == 1
    single = create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                         "DATA_DIR": str(tmp_path / "single"),
                         "SUBJECT_SECRET": "test-subject-secret-0123456789",
                         "SECRET_KEY": "test-session-secret-0123456789"})
    # the session's Redis: a lone server has no replica; the cluster and Sentinel set-ups do
    expected = 0 if (os.environ.get("HEALTHCODE_TEST_REDIS") or "single") == "single" else 1
    assert single.extensions["healthcode.store"].wait_replicas() == expected


def test_an_acknowledged_enrollment_is_on_the_replica(tmp_path, replicated):
    app = make_app(tmp_path, replicated)
    store = app.extensions["healthcode.store"]
    _, token = store.create_credential("authority")
    before = waits(replicated)
    response = app.test_client().post("/api/v1/residents", json=RESIDENT,
                                      headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    sid = response.get_json()["id"]
    assert replicated["replica"].get(f"hc:{{{sid}}}:st") == "green|1"  # read at once
    assert waits(replicated) == before + 1


def test_writes_the_replica_does_not_confirm_are_503_with_retry_after(tmp_path, replicated):
    app = make_app(tmp_path, replicated)
    store = app.extensions["healthcode.store"]
    _, token = store.create_credential("authority")
    headers = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    with frozen(replicated):
        response = client.post("/api/v1/residents", json=RESIDENT, headers=headers)
        assert response.status_code == 503
        assert response.get_json()["error"] == "store_unavailable"
        assert int(response.headers["Retry-After"]) > 0
        with pytest.raises(StoreUnavailable):
            store.create_credential("checkpoint")


def test_wait_off_answers_without_replicas(tmp_path, replicated):
    app = make_app(tmp_path, replicated, WAIT_REPLICAS=0)
    store = app.extensions["healthcode.store"]
    _, token = store.create_credential("authority")
    before = waits(replicated)
    with frozen(replicated):
        response = app.test_client().post("/api/v1/residents", json=RESIDENT,
                                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201 and waits(replicated) == before


def test_a_retry_with_the_same_key_answers_the_first_write_once_replicated(tmp_path,
                                                                          replicated):
    app = make_app(tmp_path, replicated)
    store = app.extensions["healthcode.store"]
    _, token = store.create_credential("authority")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "enroll-42"}
    client = app.test_client()
    with frozen(replicated):
        first = client.post("/api/v1/residents", json=RESIDENT, headers=headers)
        assert first.status_code == 503
        still = client.post("/api/v1/residents", json=RESIDENT, headers=headers)
        assert still.status_code == 503  # the replica still has not confirmed
    retried = client.post("/api/v1/residents", json=RESIDENT, headers=headers)
    assert retried.status_code == 201, retried.get_json()
    assert retried.get_json()["status_version"] == 1
    sid = retried.get_json()["id"]
    assert replicated["replica"].get(f"hc:{{{sid}}}:st") == "green|1"
    url = f"/api/v1/residents/{sid}/status"
    change = {"status": "red", "reason": "close_contact"}
    headers["Idempotency-Key"] = "change-42"
    with frozen(replicated):
        assert client.put(url, json=change, headers=headers).status_code == 503
    retried = client.put(url, json=change, headers=headers)
    assert retried.status_code == 200 and retried.get_json()["status_version"] == 2
    assert replicated["primary"].get(f"hc:{{{sid}}}:st") == "red|2"  # applied once
    actions = [e["action"] for e in store.audit_entries()]
    assert actions.count("enroll") == 1 and actions.count("status_change") == 1


def test_wait_settings_are_checked_at_start(tmp_path, redis_server):
    from healthcode.errors import ConfigurationError
    for bad in ({"WAIT_TIMEOUT": 0}, {"WAIT_TIMEOUT": 600}, {"WAIT_REPLICAS": -1}):
        with pytest.raises(ConfigurationError, match="HEALTHCODE_WAIT_"):
            create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                        "SECRET_KEY": "test-session-secret-0123456789",
                        "SUBJECT_SECRET": "test-subject-secret-0123456789",
                        "DATA_DIR": str(tmp_path), **bad})


def test_a_primary_left_without_replicas_still_takes_writes(tmp_path):
    """After a failover the promoted primary has no replica until the old one rejoins: it
    cannot be failed over either, so its writes are acknowledged without a WAIT."""
    proc, port, folder = start_redis()
    try:
        app = create_app({"TESTING": True, "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                          "DATA_DIR": str(tmp_path / "data"), "WAIT_REPLICAS": 1,
                          "SUBJECT_SECRET": "test-subject-secret-0123456789",
                          "SECRET_KEY": "test-session-secret-0123456789"})
        store = app.extensions["healthcode.store"]
        _, token = store.create_credential("authority")
        response = app.test_client().post("/api/v1/residents", json=RESIDENT,
                                          headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201
        stats = redis.Redis(port=port, decode_responses=True).info("commandstats")
        assert "cmdstat_wait" not in stats and stats["cmdstat_role"]["calls"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
