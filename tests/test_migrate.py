"""Upgrading from the release before sealed compact records (``healthcode store migrate``).

The old data is written here exactly as that release's store wrote it (its JSON shapes are
hard-coded below: the code that wrote them is gone), then read back through this release's
API after the migration: nothing a resident, an authority or an auditor could see is lost.
"""
from __future__ import annotations

import hashlib
import json
import logging

import pytest
from click.testing import CliRunner

from healthcode import audit, legacy, migrate
from healthcode.audit import shard_key, shard_of
from healthcode.cli import main
from healthcode.errors import StoreMigrationNeeded, StoreUnavailable
from healthcode.store import RedisStore
from healthcode.subject import subject_id
from healthcode.record import Document
from tests.conftest import RESIDENT

ACTOR = "authority:0a1b2c3d4e5f"
ENROLLED_AT = "2026-05-04T08:15:30.123456Z"  # the old release kept microseconds


def _old_record(sid: str, document: dict, status: str, reasons: list[str]) -> dict:
    """``Record.to_dict()`` of the old release for RESIDENT with this document (sorted keys,
    empty values left out, the document number masked, the subject id and masked name in)."""
    record = {
        "evidence": {"tests": [{"disease": "COVID-19", "result": "negative",
                                "sampled_at": "2026-11-27T08:00:00Z", "type": "pcr"}]},
        "status": status,
        "subject": {"birth_date": "1980-01-02",
                    "document": {"number": document["number"][:2] + "****"
                                 + document["number"][-2:],
                                 "region": document["region"], "type": document["type"]},
                    "masked_name": "陳*文", "name": "陳大文", "subject_id": sid},
    }
    if reasons:
        record["reasons"] = reasons
    return record


class OldRelease:
    """The old release's writes, re-created from its store.py (d696278^): ``create_resident``,
    ``change_status`` and ``audit``, key for key and byte for byte."""

    def __init__(self, r):
        self.r = r

    def audit(self, action, actor, at, **fields):
        entry = {"at": at, "action": action, "actor": actor}
        entry.update({k: str(v) for k, v in fields.items() if v is not None and v != ""})
        return self.r.xadd("hc:audit", entry)

    @staticmethod
    def _entry(actor, previous, status, reasons, version, now, note=None) -> str:
        entry = {"at": now, "actor": actor, "from": previous, "to": status, "version": version,
                 "reasons": list(reasons)}
        if note:
            entry["note"] = note
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))

    def enroll(self, sid, record, status, reasons, actor, now):
        self.r.set(f"hc:{{{sid}}}:st", f"{status}|1")
        self.r.set(f"hc:{{{sid}}}:rec", json.dumps({**{"record": record}, "created_at": now,
                                                    "updated_at": now}, ensure_ascii=False))
        self.r.rpush(f"hc:{{{sid}}}:hist", self._entry(actor, None, status, reasons, 1, now))
        self.audit("enroll", actor, now, subject=sid, to=status, reason=",".join(reasons),
                   version=1)

    def change(self, sid, status, reasons, actor, now, note=None):
        previous, version = self.r.get(f"hc:{{{sid}}}:st").split("|")
        version = int(version) + 1
        data = json.loads(self.r.get(f"hc:{{{sid}}}:rec"))
        data["record"]["status"] = status
        data["record"]["reasons"] = list(reasons)
        data["updated_at"] = now
        self.r.set(f"hc:{{{sid}}}:st", f"{status}|{version}")
        self.r.set(f"hc:{{{sid}}}:rec", json.dumps(data, ensure_ascii=False))
        self.r.rpush(f"hc:{{{sid}}}:hist",
                     self._entry(actor, previous, status, reasons, version, now, note))
        self.r.delete(f"hc:{{{sid}}}:code")
        self.audit("status_change", actor, now, subject=sid, **{"from": previous}, to=status,
                   reason=",".join(reasons), version=version)


def _document(i: int) -> dict:
    return {"type": "travel_permit", "number": f"H{i:07d}", "region": "MO"}


def _sid(app, document: dict) -> str:
    return subject_id(app.extensions["healthcode.subject_secret"], Document(**document))


@pytest.fixture
def old(app, redis_client):
    """An old-release store: five residents, one of them through three changes, lookups."""
    release = OldRelease(redis_client)
    sids = []
    for i in range(5):
        document = _document(i)
        sid = _sid(app, document)
        at = f"2026-05-04T08:15:3{i}Z" if i else ENROLLED_AT
        release.enroll(sid, _old_record(sid, document, "green", []), "green", [], ACTOR, at)
        sids.append(sid)
    first = sids[0]
    release.change(first, "yellow", ["close_contact"], ACTOR, "2026-05-05T09:00:00.5Z",
                   note="called on 5 May")
    release.change(first, "red", ["positive_test"], "authority:ffee00112233",
                   "2026-05-06T10:00:00Z")
    release.change(first, "green", ["isolation_ended"], ACTOR, "2026-05-20T10:00:00Z")
    release.audit("lookup", "checkpoint:aa00bb11cc22", "2026-05-21T10:00:00Z", subject=first,
                  found=True)
    release.audit("lookup_rate_limited", "partner:0123456789ab", "2026-05-21T10:00:01Z",
                  limit=60)
    release.sids = sids
    return release


def _all_keys(redis_server) -> dict:
    """Every key and its DUMP on every primary: to tell that nothing changed."""
    client = redis_server.client()
    try:
        from healthcode import redis_topology

        return {k: client.dump(k) for k in redis_topology.scan_iter(client, "*")}
    finally:
        client.close()


def _store(app) -> RedisStore:
    return app.extensions["healthcode.store"]


def test_the_old_layout_reads_back_whole_through_the_api(app, client, creds, old,
                                                         redis_client):
    first = old.sids[0]
    old_trail = list(_store(app).audit_export())
    report = migrate.run(_store(app))
    assert (report.converted, report.current, report.failed) == (5, 0, {})
    assert report.audit == {"moved": 10, "already": 0, "kept": 0}

    shown = client.get(f"/api/v1/residents/{first}", headers=creds.authority).get_json()
    assert shown["status"] == "green" and shown["status_version"] == 4
    assert shown["reasons"] == ["isolation_ended"] and shown["masked_name"] == "陳*文"
    assert shown["created_at"] == ENROLLED_AT and shown["updated_at"] == "2026-05-20T10:00:00Z"
    assert shown["record"] == {**_old_record(first, _document(0), "green", ["isolation_ended"])}

    changes = client.get(f"/api/v1/residents/{first}/history",
                         headers=creds.authority).get_json()["changes"]
    assert changes == [
        {"at": ENROLLED_AT, "actor": ACTOR, "from": None, "to": "green", "version": 1,
         "reasons": []},
        {"at": "2026-05-05T09:00:00.500000Z", "actor": ACTOR, "from": "green", "to": "yellow",
         "version": 2, "reasons": ["close_contact"], "note": "called on 5 May"},
        {"at": "2026-05-06T10:00:00Z", "actor": "authority:ffee00112233", "from": "yellow",
         "to": "red", "version": 3, "reasons": ["positive_test"]},
        {"at": "2026-05-20T10:00:00Z", "actor": ACTOR, "from": "red", "to": "green",
         "version": 4, "reasons": ["isolation_ended"]},
    ]
    for sid in old.sids[1:]:
        shown = client.get(f"/api/v1/residents/{sid}", headers=creds.authority).get_json()
        assert (shown["status"], shown["status_version"]) == ("green", 1)
        assert "reasons" not in shown["record"] and shown["record"]["subject"]["subject_id"] == sid

    # the code signed from the migrated record verifies online at its status version
    code = client.get(f"/api/v1/residents/{first}/code", headers=creds.authority).get_json()
    verified = client.post("/api/v1/verify", json={"code": code["code"]},
                           headers=creds.checkpoint).get_json()
    assert verified["valid"] and verified["status"] == "green"
    assert verified["status_version"] == 4 and verified["checked_online"]
    # and the record takes new changes on top of its converted history
    assert client.put(f"/api/v1/residents/{first}/status", headers=creds.authority,
                      json={"status": "yellow", "reason": "symptoms"}).status_code == 200
    changes = client.get(f"/api/v1/residents/{first}/history",
                         headers=creds.authority).get_json()["changes"]
    assert [c["version"] for c in changes] == [1, 2, 3, 4, 5] and changes[-1]["from"] == "green"

    # the audit trail: the old stream is gone, its entries in their shards, same order, same
    # content (each still with the time the old release gave it)
    assert not redis_client.exists("hc:audit")
    assert list(_store(app).audit_export())[:len(old_trail)] == old_trail
    assert [e["action"] for e in old_trail] == ["enroll"] * 5 + ["status_change"] * 3 + [
        "lookup", "lookup_rate_limited"]
    ids = [e["id"] for e in old_trail]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    for entry in old_trail:
        assert entry["shard"] == shard_of(entry.get("subject") or entry["actor"])
        assert redis_client.xrange(shard_key(entry["shard"]), min=entry["id"],
                                   max=entry["id"])


def test_old_trail_is_merged_in_time_order_with_the_new_one_before_migrating(
        app, client, creds, old):
    """Readers merge the old stream as one more source: nothing is hidden meanwhile."""
    store = _store(app)
    client.post("/api/v1/residents", json={**RESIDENT, "document": _document(99)},
                headers=creds.authority)
    trail = list(store.audit_export())
    assert len(trail) == 11 and trail[-1]["action"] == "enroll"
    assert trail[0]["at"] == ENROLLED_AT and trail[0]["subject"] == old.sids[0]
    newest = store.audit_entries(3)
    assert [e["action"] for e in newest] == ["enroll", "lookup_rate_limited", "lookup"]
    assert [e["id"] for e in reversed(store.audit_entries(11))] == [e["id"] for e in trail]


def test_running_again_changes_nothing(app, old, redis_server):
    migrate.run(_store(app))
    before = _all_keys(redis_server)
    again = migrate.run(_store(app))
    assert (again.converted, again.current, again.failed) == (0, 5, {})
    assert again.audit == {"moved": 0, "already": 0, "kept": 0}
    assert _all_keys(redis_server) == before


def test_a_dry_run_counts_and_writes_nothing(app, old, redis_server):
    before = _all_keys(redis_server)
    dry = migrate.run(_store(app), dry_run=True)
    assert (dry.converted, dry.current, dry.failed) == (5, 0, {})
    assert dry.audit == {"moved": 10, "already": 0, "kept": 0}
    assert _all_keys(redis_server) == before
    real = migrate.run(_store(app))
    assert (real.converted, real.audit) == (dry.converted, dry.audit)


def test_a_long_old_stream_moves_page_by_page(app, old, monkeypatch, redis_client):
    monkeypatch.setattr(audit, "PAGE", 3)
    before = list(_store(app).audit_export())
    assert migrate.run(_store(app), dry_run=True).audit == {"moved": 10, "already": 0,
                                                            "kept": 0}
    assert migrate.run(_store(app)).audit == {"moved": 10, "already": 0, "kept": 0}
    assert list(_store(app).audit_export()) == before and not redis_client.exists("hc:audit")


def test_an_interrupted_run_resumes(app, client, creds, old, monkeypatch, redis_client):
    real = RedisStore.replace_subjects
    calls = []

    def crash_on_the_second_batch(self, items):
        if calls:
            raise StoreUnavailable("the connection dropped")
        calls.extend(sid for sid, *_ in items)
        return real(self, items)

    monkeypatch.setattr(migrate, "BATCH", 2)
    monkeypatch.setattr(RedisStore, "replace_subjects", crash_on_the_second_batch)
    with pytest.raises(StoreUnavailable):
        migrate.run(_store(app))
    monkeypatch.undo()
    assert len(calls) == 2
    # the two converted subjects read back; the others are untouched, whole, in the old form
    for sid in old.sids:
        response = client.get(f"/api/v1/residents/{sid}", headers=creds.authority)
        assert response.status_code == (200 if sid in calls else 503)
    assert redis_client.exists("hc:audit")

    # a run cut between moving an audit entry and deleting it from the old stream
    entry_id, fields = redis_client.xrange("hc:audit", count=1)[0]
    redis_client.xadd(shard_key(shard_of(fields["subject"])), fields, id=entry_id)
    assert len(list(_store(app).audit_export())) == 10  # not shown twice

    dry = migrate.run(_store(app), dry_run=True)
    assert (dry.converted, dry.current, dry.audit) == (3, 2, {"moved": 9, "already": 1,
                                                             "kept": 0})
    resumed = migrate.run(_store(app))
    assert (resumed.converted, resumed.current, resumed.failed) == (3, 2, {})
    assert resumed.audit == {"moved": 9, "already": 1, "kept": 0}
    for sid in old.sids:
        assert client.get(f"/api/v1/residents/{sid}",
                          headers=creds.authority).status_code == 200
    assert len(list(_store(app).audit_export())) == 10


def test_before_migrating_the_service_answers_store_migration_needed(app, client, creds, old,
                                                                     caplog, monkeypatch):
    first = old.sids[0]
    monkeypatch.setattr(legacy, "_logged", [float("-inf")])  # logged at most once a minute
    with caplog.at_level(logging.ERROR, logger="healthcode"):
        for path in (f"/api/v1/residents/{first}", f"/api/v1/residents/{first}/history",
                     f"/api/v1/residents/{first}/code"):
            response = client.get(path, headers=creds.authority)
            assert response.status_code == 503, path
            assert response.get_json()["error"] == "store_migration_needed"
    logged = caplog.text
    assert "store_migration_needed" in logged
    assert "陳" not in logged and first not in logged and "H0000000" not in logged
    # the status key kept its format: online checks of the subject go on meanwhile
    assert _store(app).current_status(first) == ("green", 4)
    assert caplog.text.count("store_migration_needed:") == 1  # not once per request
    with pytest.raises(StoreMigrationNeeded):  # nor is it re-keyed as if it were sealed
        _store(app).rekey(f"hc:{{{first}}}:rec")

    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["store"]["old_release_data"] is True
    assert "store_migration_needed" in [w["code"] for w in ready.get_json()["warnings"]]
    migrate.run(_store(app))
    ready = client.get("/readyz").get_json()
    assert ready["store"]["old_release_data"] is False
    assert "store_migration_needed" not in [w["code"] for w in ready["warnings"]]


def test_a_change_between_reading_and_writing_a_subject_is_not_lost(app, client, creds, old,
                                                                    monkeypatch):
    """The script writes only if the keys still hold what was read; else the subject is read
    and converted again, the change included."""
    sid = old.sids[3]
    real = RedisStore.subjects_keys
    rounds = []

    def change_after_the_first_read(self, sids):
        read = real(self, sids)
        if not rounds:
            client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
                       json={"status": "yellow", "reason": "symptoms"})
        rounds.append(list(sids))
        return read

    monkeypatch.setattr(RedisStore, "subjects_keys", change_after_the_first_read)
    report = migrate.run(_store(app))
    assert (report.converted, report.failed) == (5, {}) and rounds[1] == [sid]
    changes = client.get(f"/api/v1/residents/{sid}/history",
                         headers=creds.authority).get_json()["changes"]
    assert [(c["to"], c["version"]) for c in changes] == [("green", 1), ("yellow", 2)]


def test_a_change_made_by_the_new_release_before_migrating_is_kept(app, client, creds, old):
    """Its status script appends without reading the record: the history ends mixed."""
    sid = old.sids[1]
    assert client.put(f"/api/v1/residents/{sid}/status", headers=creds.authority,
                      json={"status": "red", "reason": "positive_test"}).status_code == 200
    report = migrate.run(_store(app))
    assert (report.converted, report.failed) == (5, {})
    changes = client.get(f"/api/v1/residents/{sid}/history",
                         headers=creds.authority).get_json()["changes"]
    assert [(c["to"], c["version"], c["from"]) for c in changes] == [
        ("green", 1, None), ("red", 2, "green")]
    shown = client.get(f"/api/v1/residents/{sid}", headers=creds.authority).get_json()
    assert (shown["status"], shown["status_version"], shown["reasons"]) == (
        "red", 2, ["positive_test"])


def test_audit_entries_whose_shard_is_newer_stay_readable_in_order(app, client, creds, old,
                                                                   redis_client):
    """The new release served first and wrote newer entries into a shard: an old entry cannot
    go in below them (a stream takes only ids above its last), so it stays in the old stream,
    still merged by the readers and trimmed by retention."""
    first = old.sids[0]
    assert client.put(f"/api/v1/residents/{first}/status", headers=creds.authority,
                      json={"status": "yellow", "reason": "symptoms"}).status_code == 200
    before = list(_store(app).audit_export())
    dry = migrate.run(_store(app), dry_run=True)
    report = migrate.run(_store(app))
    assert dry.audit == report.audit
    # the first subject's 5 old entries (enroll, 3 changes, lookup) share its shard
    assert report.audit["kept"] >= 5 and report.audit["moved"] + report.audit["kept"] == 10
    assert redis_client.exists("hc:audit")
    assert list(_store(app).audit_export()) == before
    assert migrate.run(_store(app)).audit["kept"] == report.audit["kept"]
    assert _store(app).audit_trim(now=2e9) and not redis_client.exists("hc:audit")


def test_a_subject_that_does_not_add_up_is_reported_and_left_alone(app, old, redis_client,
                                                                   redis_server):
    broken = old.sids[2]
    redis_client.rpush(f"hc:{{{broken}}}:hist", redis_client.lindex(
        f"hc:{{{broken}}}:hist", 0))  # two enrollments, status version 1
    key = f"hc:{{{broken}}}:rec"
    before = {k: v for k, v in _all_keys(redis_server).items() if broken in k}
    report = migrate.run(_store(app))
    assert report.failed == {key: "history_inconsistent"} and report.converted == 4
    assert report.audit is None and redis_client.exists("hc:audit")  # moved once all are
    assert {k: v for k, v in _all_keys(redis_server).items() if broken in k} == before
    text = "\n".join(report.lines())
    assert f"failed {key}: history_inconsistent" in text and "陳" not in text


def test_the_command(old, redis_server, tmp_path, record_key):
    env = {"HEALTHCODE_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": redis_server.url,
           "HEALTHCODE_ISSUER": "HC-TEST",
           "HEALTHCODE_SUBJECT_SECRET": "test-subject-secret-0123456789",
           "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789",
           "HEALTHCODE_RECORD_KEY": record_key}
    runner = CliRunner()
    dry = runner.invoke(main, ["store", "migrate", "--dry-run"], env=env,
                        catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert "records: would convert 5, already current 0, failed 0" in dry.output
    assert "audit: would move 10, found moved 0, kept 0 entries of hc:audit" in dry.output
    done = runner.invoke(main, ["store", "migrate"], env=env, catch_exceptions=False)
    assert done.exit_code == 0 and "records: converted 5, already current 0" in done.output
    again = runner.invoke(main, ["store", "migrate"], env=env, catch_exceptions=False)
    assert "records: converted 0, already current 5, failed 0" in again.output
    assert "陳" not in dry.output + done.output + again.output


def test_the_other_key_families_kept_their_format(app, client, redis_client):
    """Credentials, page sessions, sign-in links and status keys as the old release wrote
    them work unchanged: nothing of theirs needs migrating."""
    def sha(text):
        return hashlib.sha256(text.encode()).hexdigest()

    cred_id, secret = "0a1b2c3d4e5f", "Zm9vYmFyLWJhei1xdXV4LTAxMjM0NTY3ODlhYmNk"
    redis_client.hset(f"hc:cred:{cred_id}", mapping={
        "role": "authority", "hash": sha(secret), "created_at": ENROLLED_AT, "label": "old"})
    headers = {"Authorization": f"Bearer hc_{cred_id}.{secret}"}
    made = client.post("/api/v1/residents", json=RESIDENT, headers=headers)
    assert made.status_code == 201
    sid = made.get_json()["id"]

    sessions = app.extensions["healthcode.sessions"]
    session_id = "s" * 43
    redis_client.set(f"hc:sess:{sha(session_id)}", json.dumps({
        "cred": cred_id, "role": "authority", "subject": None, "label": "old", "kind": "token",
        "at": ENROLLED_AT}), ex=600)
    page = sessions.load(session_id)
    assert (page.credential.id, page.credential.role, page.credential.mode) == (
        cred_id, "authority", None)
    link = "l" * 32
    redis_client.set(f"hc:link:{sha(link)}", sid, ex=600)
    assert sessions.redeem_link(link) == sid

    redis_client.set(f"hc:{{{sid}}}:st", "yellow|7")  # "<status>|<version>", as ever
    assert app.extensions["healthcode.store"].current_status(sid) == ("yellow", 7)
