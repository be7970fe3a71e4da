"""The audit trail: sharded over streams with their own hash tags, merged in time order by
readers, trimmed past the retention without ever losing a younger entry."""
import json
import time

import pytest
from click.testing import CliRunner

from healthcode import audit
from healthcode.audit import SHARDS, AuditLog, shard_key, shard_of
from healthcode.cli import main
from tests.conftest import RESIDENT

DAY_MS = 86400 * 1000


def test_no_single_stream_is_written_by_every_request(client, creds, redis_client):
    for i in range(40):
        body = {**RESIDENT, "document": {**RESIDENT["document"], "number": f"H{i:07d}"}}
        assert client.post("/api/v1/residents", json=body,
                           headers=creds.authority).status_code == 201
    streams = redis_client.keys("hc:audit*")
    assert "hc:audit" not in streams
    assert len(streams) > 8  # 40 subjects spread over the 16 shards
    assert all(k.startswith("hc:audit:{") for k in streams)
    assert sum(redis_client.xlen(k) for k in streams) == 40


def test_one_subjects_trail_stays_in_its_shard_in_order(app, client, creds, enrolled,
                                                       redis_client):
    sid = enrolled["id"]
    for status, reason in (("red", "close_contact"), ("green", "negative_test")):
        client.put(f"/api/v1/residents/{sid}/status", json={"status": status, "reason": reason},
                   headers=creds.authority)
    trail = [f for _, f in redis_client.xrange(shard_key(shard_of(sid)))
             if f.get("subject") == sid]
    assert [(f["action"], f.get("to")) for f in trail] == [
        ("enroll", "green"), ("status_change", "red"), ("status_change", "green")]


def test_readers_merge_the_shards_in_time_order(app, redis_client):
    store = app.extensions["healthcode.store"]
    now = int(time.time() * 1000)
    # the same millisecond, and out of order across shards: ordered by id, then shard
    written = [(5, now - 3000), (2, now - 2000), (9, now - 2000), (0, now - 1000)]
    for shard, ms in written:
        redis_client.xadd(shard_key(shard), {"action": "test", "actor": "t", "n": str(ms)},
                          id=f"{ms}-0")
    exported = list(store.audit_export())
    assert [(e["shard"], e["id"]) for e in exported] == [(s, f"{m}-0") for s, m in written]
    assert exported[0]["at"].endswith("Z")
    newest = store.audit_entries(3)
    assert [e["shard"] for e in newest] == [0, 9, 2]
    window = list(store.audit_export(since_ms=now - 2000, until_ms=now - 2000))
    assert [e["shard"] for e in window] == [2, 9]


def test_export_pages_through_long_streams(app, redis_client, monkeypatch):
    monkeypatch.setattr(audit, "PAGE", 7)
    store = app.extensions["healthcode.store"]
    for i in range(50):
        store.audit("test", actor="t", subject=f"s{i % 3}", n=i)
    exported = list(store.audit_export())
    assert sorted(int(e["n"]) for e in exported) == list(range(50))
    ids = [(int(e["id"].split("-")[0]), int(e["id"].split("-")[1]), e["shard"])
           for e in exported]
    assert ids == sorted(ids)


def _fill(redis_client, now_ms, ages_ms, shard=3):
    for i, age in enumerate(ages_ms):
        redis_client.xadd(shard_key(shard), {"action": "test", "actor": "t", "age": str(age)},
                          id=f"{now_ms - age}-{i}")


def _ages(redis_client, shard=3):
    return sorted(int(f["age"]) for _, f in redis_client.xrange(shard_key(shard)))


@pytest.mark.parametrize("exact", [True, False])
def test_trimming_never_removes_an_entry_younger_than_the_retention(redis_client, exact):
    log = AuditLog(retention_days=10, skew_seconds=60)
    now = time.time()
    now_ms = int(now * 1000)
    # 2,000 entries a few minutes apart around the cut-off: 20 stream nodes of 100 entries
    ages = sorted({int((10 * 86400 + (i - 1000) * 300) * 1000) for i in range(2000)},
                  reverse=True)
    _fill(redis_client, now_ms, ages)
    removed = log.trim(redis_client, now=now, exact=exact)
    kept = _ages(redis_client)
    younger = [a for a in ages if a <= 10 * DAY_MS]
    assert set(younger) <= set(kept), "an entry younger than the retention was removed"
    assert removed[3] > 0  # the test would notice a trim that does nothing
    if exact:  # exact trimming keeps nothing past the retention and its skew
        assert all(a <= 10 * DAY_MS + 60_000 for a in kept)


def test_the_service_trims_at_most_once_a_minute_per_shard(redis_client):
    # the log's clock runs two days ahead: everything written now is past a 1-day retention
    clock = [time.time() + 2 * 86400]
    log = AuditLog(retention_days=1, skew_seconds=0, clock=lambda: clock[0])
    subject = "AAAAAAAAAAAAAAAA"
    key = shard_key(shard_of(subject))

    def fill():
        for _ in range(300):  # three whole stream nodes, which approximate trimming drops
            redis_client.xadd(key, {"action": "old", "actor": "t"})

    def add():
        log.add(redis_client, "enroll", "a", {"subject": subject}, subject=subject)
        return redis_client.xlen(key)

    fill()
    assert add() < 301  # the first append of this process trims
    fill()
    before = redis_client.xlen(key)
    clock[0] += 30
    assert add() == before + 1  # within the minute: no trim
    clock[0] += 31
    assert add() < before + 2


def test_no_trimming_with_retention_zero(redis_client):
    log = AuditLog(retention_days=0)
    _fill(redis_client, int(time.time() * 1000), [10_000 * DAY_MS])
    assert log.trim(redis_client) == {} and _ages(redis_client) == [10_000 * DAY_MS]


# -- the command ------------------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path, redis_server, redis_client):
    env = {"HEALTHCODE_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": redis_server.url,
           "HEALTHCODE_SUBJECT_SECRET": "cli-secret-0123456789",
           "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789",
           "HEALTHCODE_AUDIT_RETENTION_DAYS": "30"}
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def test_export_before_trim_archives_everything(cli, redis_client, tmp_path):
    now_ms = int(time.time() * 1000)
    ages = [90 * DAY_MS, 60 * DAY_MS, 31 * DAY_MS, 29 * DAY_MS, 1000]
    for shard, age in enumerate(ages):
        redis_client.xadd(shard_key(shard * 3 % SHARDS),
                          {"action": "test", "actor": "t", "age": str(age)},
                          id=f"{now_ms - age}-0")
    archive = tmp_path / "audit.jsonl"
    exported = cli("audit", "export", "--out", str(archive))
    assert exported.exit_code == 0 and "exported 5 entries" in exported.output
    lines = [json.loads(line) for line in archive.read_text().splitlines()]
    assert [int(e["age"]) for e in lines] == ages  # oldest first
    assert all(set(e) == {"id", "shard", "at", "action", "actor", "age"} for e in lines)
    trimmed = cli("audit", "trim")
    assert trimmed.exit_code == 0 and "removed 3 entries" in trimmed.output
    remaining = {int(f["age"]) for k in redis_client.keys("hc:audit:*")
                 for _, f in redis_client.xrange(k)}
    assert remaining == {29 * DAY_MS, 1000}
    assert {int(e["age"]) for e in lines} >= remaining | {90 * DAY_MS, 60 * DAY_MS, 31 * DAY_MS}


def test_tail_and_a_windowed_export(cli, redis_client):
    now_ms = int(time.time() * 1000)
    for i, shard in enumerate((1, 7, 4, 12)):
        redis_client.xadd(shard_key(shard), {"action": f"a{i}", "actor": "t"},
                          id=f"{now_ms - 10_000 + i * 1000}-0")
    tail = cli("audit", "tail", "-n", "2").output.splitlines()
    assert [json.loads(line)["action"] for line in tail] == ["a2", "a3"]
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now_ms - 9_000) / 1000))
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now_ms - 7_500) / 1000))
    result = cli("audit", "export", "--since", since + "." + f"{(now_ms - 9_000) % 1000:03d}Z",
                 "--until", until + "." + f"{(now_ms - 7_500) % 1000:03d}Z")
    actions = [json.loads(line)["action"] for line in result.output.splitlines()
               if line.startswith("{")]
    assert actions == ["a1", "a2"]
    assert cli("audit", "export", "--since", "yesterday").exit_code == 1
