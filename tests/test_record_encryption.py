"""Personal data at rest: records, histories and kept answers are sealed with AES-GCM, the
subject id as associated data; the record key ring rotates without losing a record."""
import os
import stat

import pytest
from redis.client import NEVER_DECODE
from click.testing import CliRunner

from healthcode import create_app, redis_topology
from healthcode.cli import main
from healthcode.recordcrypt import (RecordCipher, RecordUnreadable, load_cipher, parse_ring,
                                    ring_file)
from tests.conftest import RESIDENT

CLEAR = ("陳大文".encode(), "1980-01-02".encode(), b"1980", b"H1234567", b"H1****67",
         "Ana Lopes".encode(), b"Lopes", "self-isolating at".encode())


def raw(client, *command):
    """A command's answer as bytes, whatever the client decodes (values may be binary)."""
    return client.execute_command(*command, **{NEVER_DECODE: True})


def every_value(redis_server) -> bytes:
    """Every value of every key on every primary, read raw by type (DUMP may compress,
    hiding a clear text)."""
    client = redis_server.client()
    out = []
    try:
        for key in redis_topology.scan_iter(client, "*"):
            kind = client.type(key)
            if kind == "string":
                out.append(raw(client, "GET", key))
            elif kind == "list":
                out += raw(client, "LRANGE", key, 0, -1)
            elif kind == "hash":
                out += [k + b"=" + v for k, v in raw(client, "HGETALL", key).items()]
            elif kind == "stream":
                out.append(repr(client.xrange(key)).encode())  # audit entries are text
            else:
                raise AssertionError(f"unexpected {kind} at {key}")
        return b"\n".join(out)
    finally:
        client.close()


def test_no_name_or_birth_date_is_stored_in_clear(client, creds, redis_server):
    enrolled = client.post("/api/v1/residents", json=RESIDENT, headers={
        **creds.authority, "Idempotency-Key": "enroll-1"}).get_json()
    sid = enrolled["id"]
    client.put(f"/api/v1/residents/{sid}/status", headers={
        **creds.authority, "Idempotency-Key": "change-1"},
        json={"status": "red", "reason": "close_contact", "note": "self-isolating at home"})
    client.post("/api/v1/residents/batch", headers=creds.authority, json={"residents": [
        {"name": "Ana Lopes", "birth_date": "1980-01-02", "status": "green",
         "document": {"type": "id_card", "number": "7654321", "region": "MO"}}]})
    dump = every_value(redis_server)
    assert b"close_contact" in dump  # the audit trail and status are there, in clear
    leaked = [c for c in CLEAR if c in dump]
    assert not leaked, f"personal data in clear: {leaked}"
    # and it all reads back through the service
    body = client.get(f"/api/v1/residents/{sid}", headers=creds.authority).get_json()
    assert body["record"]["subject"]["name"] == "陳大文" and body["status"] == "red"
    history = client.get(f"/api/v1/residents/{sid}/history", headers=creds.authority).get_json()
    assert history["changes"][-1]["note"] == "self-isolating at home"


def test_a_record_moved_to_another_subject_does_not_open(app, client, creds, redis_client):
    first = client.post("/api/v1/residents", json=RESIDENT, headers=creds.authority).get_json()
    other = {**RESIDENT, "document": {**RESIDENT["document"], "number": "H7654321"}}
    second = client.post("/api/v1/residents", json=other, headers=creds.authority).get_json()
    redis_client.set(f"hc:{{{second['id']}}}:rec",
                     raw(redis_client, "GET", f"hc:{{{first['id']}}}:rec"))
    with pytest.raises(RecordUnreadable):
        app.extensions["healthcode.store"].resident(second["id"])


def test_the_key_file_is_created_private_once(tmp_path):
    cipher = load_cipher(None, tmp_path)
    path = ring_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_cipher(None, tmp_path)
    sealed = cipher.seal("sid", b"secret")
    assert again.open("sid", sealed) == b"secret"
    with pytest.raises(RecordUnreadable):
        again.open("another sid", sealed)


@pytest.mark.parametrize("text", ["", "1:short", "0:" + "A" * 43, "x:" + "A" * 43,
                                  "300:" + "A" * 43])
def test_bad_key_rings_are_refused_at_start(text, tmp_path):
    from healthcode.errors import ConfigurationError
    with pytest.raises(ConfigurationError):
        RecordCipher(parse_ring(text, "HEALTHCODE_RECORD_KEY"))


def test_the_key_comes_from_the_environment_when_set(tmp_path, redis_server, redis_client):
    key = "1:" + "B" * 43
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                      "DATA_DIR": str(tmp_path / "d"), "RECORD_KEY": key,
                      "SUBJECT_SECRET": "test-subject-secret-0123456789",
                      "SECRET_KEY": "test-session-secret-0123456789"})
    assert not ring_file(tmp_path / "d").exists()
    assert app.extensions["healthcode.record_cipher"].kids == [1]


def test_a_host_on_a_shared_redis_never_makes_up_a_record_key(tmp_path, redis_server,
                                                               monkeypatch):
    from healthcode.errors import ConfigurationError
    monkeypatch.delenv("HEALTHCODE_RECORD_KEY")
    with pytest.raises(ConfigurationError, match="HEALTHCODE_RECORD_KEY"):
        create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                    "DATA_DIR": str(tmp_path / "d"),
                    "SUBJECT_SECRET": "test-subject-secret-0123456789",
                    "SECRET_KEY": "test-session-secret-0123456789"})
    assert not ring_file(tmp_path / "d").exists()


def test_rotation_new_writes_use_the_newest_key_and_rekey_reseals_the_rest(
        tmp_path, redis_server, redis_client, monkeypatch):
    monkeypatch.delenv("HEALTHCODE_RECORD_KEY")  # the ring in the data dir, made by init
    data = tmp_path / "data"
    config = {"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(data),
              "SUBJECT_SECRET": "test-subject-secret-0123456789", "CREDENTIAL_CACHE_SECONDS": 0,
              "SECRET_KEY": "test-session-secret-0123456789"}
    env = {"HEALTHCODE_DATA_DIR": str(data), "REDIS_URL": redis_server.url,
           "HEALTHCODE_SUBJECT_SECRET": config["SUBJECT_SECRET"],
           "HEALTHCODE_SECRET_KEY": config["SECRET_KEY"], "HEALTHCODE_RECORD_KEY": None}
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env, catch_exceptions=False).exit_code == 0

    def key_ids():
        ids = {}
        for key in redis_topology.scan_iter(redis_client, "hc:{*}:*"):
            if key.endswith(":rec"):
                ids[key] = raw(redis_client, "GET", key)[0]
            elif key.endswith(":hist"):
                ids[key] = raw(redis_client, "LINDEX", key, 0)[0]
        return ids

    app = create_app(config)
    store = app.extensions["healthcode.store"]
    _, token = store.create_credential("authority")
    headers = {"Authorization": f"Bearer {token}"}
    old = app.test_client().post("/api/v1/residents", json=RESIDENT, headers=headers).get_json()
    app.test_client().put(f"/api/v1/residents/{old['id']}/status", headers=headers,
                          json={"status": "yellow", "reason": "symptoms", "note": "cough"})
    assert set(key_ids().values()) == {1}

    rotated = runner.invoke(main, ["records", "rotate-key"], env=env, catch_exceptions=False)
    assert rotated.output.strip() == "2"
    assert runner.invoke(main, ["records", "keys"], env=env).output.splitlines() == [
        "1\topens older records", "2\tnewest"]
    app = create_app(config)  # a restart loads the new ring
    client = app.test_client()
    other = {**RESIDENT, "document": {**RESIDENT["document"], "number": "H7654321"}}
    new = client.post("/api/v1/residents", json=other, headers=headers).get_json()
    ids = key_ids()
    assert ids[f"hc:{{{new['id']}}}:rec"] == 2
    assert ids[f"hc:{{{old['id']}}}:rec"] == 1
    # the old record still opens
    body = client.get(f"/api/v1/residents/{old['id']}", headers=headers).get_json()
    assert body["record"]["subject"]["name"] == "陳大文" and body["status"] == "yellow"

    rekeyed = runner.invoke(main, ["records", "rekey"], env=env, catch_exceptions=False)
    assert "re-sealed 2 of 3 keys under record key 2" in rekeyed.output
    assert set(key_ids().values()) == {2}
    # key 1 can now go: a ring of key 2 alone opens everything
    lines = ring_file(data).read_text().splitlines()
    ring_file(data).write_text(lines[-1] + "\n")
    app = create_app(config)
    client = app.test_client()
    for sid in (old["id"], new["id"]):
        assert client.get(f"/api/v1/residents/{sid}", headers=headers).status_code == 200
    history = client.get(f"/api/v1/residents/{old['id']}/history", headers=headers).get_json()
    assert history["changes"][-1]["note"] == "cough"
