"""Cluster-safe data model: every command the service sends touches one hash slot, and every
MULTI transaction stays within one slot; no KEYS. Checked on any topology by recording what the
service's Redis connections send and asking the server which arguments are keys
(``COMMAND GETKEYS``), so it holds for the key layout rather than for a list of key names."""
from __future__ import annotations

from redis.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.crc import key_slot

from healthcode import migrate
from healthcode.record import Document
from healthcode.subject import subject_id
from tests.conftest import RESIDENT
from tests.test_migrate import OldRelease


class Recorder:
    """Every command the service's connections put on the wire, however it was packed (one
    at a time, in redis-py's pipelines, or pre-packed by the bulk writes)."""

    def __init__(self):
        self.on = False
        self.commands: list[tuple] = []
        self.transactions: list[list[tuple]] = []

    def install(self, monkeypatch):
        send_packed_command = AbstractConnection.send_packed_command
        recorder = self

        def send(conn, command, *args, **kwargs):
            if recorder.on:
                sent = _commands(command)
                recorder.commands.extend(sent)
                if any(c[0].upper() == b"MULTI" for c in sent):
                    recorder.transactions.append(sent)
            return send_packed_command(conn, command, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", send)


def _commands(packed) -> list[tuple]:
    """The commands in what a connection sends: RESP arrays of bulk strings."""
    chunks = [packed] if isinstance(packed, (str, bytes)) else packed
    data = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
    commands, at = [], 0
    while at < len(data):
        assert data[at:at + 1] == b"*", data[at:at + 20]
        end = data.index(b"\r\n", at)
        count, at = int(data[at + 1:end]), end + 2
        args = []
        for _ in range(count):
            assert data[at:at + 1] == b"$", data[at:at + 20]
            end = data.index(b"\r\n", at)
            size, at = int(data[at + 1:end]), end + 2
            args.append(data[at:at + size])
            at += size + 2
        commands.append(tuple(args))
    return commands


def _keys(redis_client, redis_server, args) -> list[str]:
    try:
        return list(redis_client.command_getkeys(*args))
    except ResponseError:  # "no key arguments" / not a data command
        return []


def _workload(client, creds, app):
    enrolled = client.post("/api/v1/residents", json=RESIDENT, headers=creds.authority)
    sid = enrolled.get_json()["id"]
    client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
               json={"status": "yellow", "reason": "close_contact"})
    client.get(f"/api/v1/residents/{sid}", headers=creds.authority)
    client.get(f"/api/v1/residents/{sid}/history", headers=creds.authority)
    code = client.get(f"/api/v1/residents/{sid}/code", headers=creds.authority).get_json()
    client.get(f"/api/v1/residents/{sid}/code?format=png", headers=creds.authority)
    client.post("/api/v1/verify", json={"code": code["code"]}, headers=creds.checkpoint)
    client.post("/api/v1/lookup", json={"document": RESIDENT["document"]},
                headers=creds.checkpoint)
    client.post("/api/v1/residents/batch", headers=creds.authority, json={"residents": [
        {**RESIDENT, "document": {"type": "id_card", "number": f"B{i}", "region": "MO"}}
        for i in range(20)]})
    client.post("/api/v1/codes", headers=creds.authority, json={
        **RESIDENT, "document": {"type": "passport", "number": "K9", "region": "HK"}})
    sessions = app.extensions["healthcode.sessions"]
    token, _ = sessions.create_link(sid)
    sessions.link_alive(token)
    sessions.redeem_link(token)
    store = app.extensions["healthcode.store"]
    credential = store.check_credential(creds.token("checkpoint"))
    page = sessions.create(credential, "token")
    sessions.load(page.id)
    sessions.end(page.id)
    store.credentials()
    made, _ = store.create_credential("partner")
    store.revoke_credential(made.id)
    client.get("/readyz")
    # upgrading from the earlier release: old-format data read, migrated, read again
    release = OldRelease(store.r)
    document = {"type": "passport", "number": "K1234567", "region": "HK"}
    old = subject_id(app.extensions["healthcode.subject_secret"], Document(**document))
    release.enroll(old, {"status": "green", "subject": {"name": "n", "subject_id": old}},
                   "green", [], "authority:0a1b2c3d4e5f", "2026-05-04T08:15:30Z")
    release.change(old, "red", ["close_contact"], "authority:0a1b2c3d4e5f",
                   "2026-05-05T08:15:30Z")
    assert client.get(f"/api/v1/residents/{old}", headers=creds.authority).status_code == 503
    list(store.audit_export())
    store.audit_entries(5)
    migrate.run(store, dry_run=True)
    assert migrate.run(store).converted == 1
    assert client.get(f"/api/v1/residents/{old}/history",
                      headers=creds.authority).status_code == 200
    store.audit_trim()


def test_every_command_touches_one_slot(client, creds, app, redis_client, redis_server,
                                        monkeypatch):
    creds.token("checkpoint"), creds.token("authority")  # made before recording starts
    recorder = Recorder()
    recorder.install(monkeypatch)
    recorder.on = True
    _workload(client, creds, app)
    recorder.on = False

    names = {c[0].decode().upper() for c in recorder.commands}
    assert "KEYS" not in names
    # (a subject's writes run as scripts: EVALSHA, whose declared keys GETKEYS checks too)
    assert {"SET", "GET", "MULTI", "EXEC", "EVALSHA", "XADD", "HSET"} <= names, names
    # the batch's pre-packed writes too: a record and a status per resident
    assert sum(c[0].upper() == b"SET" and c[-1].upper() == b"NX" for c in recorder.commands) \
        >= 2 * 20
    crossing = []
    for args in recorder.commands:
        slots = {key_slot(str(k).encode()) for k in _keys(redis_client, redis_server, args)}
        if len(slots) > 1:
            crossing.append(args[:2])
    assert not crossing, crossing
    assert recorder.transactions, "no MULTI transaction was recorded"
    for block in recorder.transactions:
        slots = {key_slot(str(k).encode()) for args in block
                 for k in _keys(redis_client, redis_server, args)}
        assert len(slots) == 1, [b[:2] for b in block]
