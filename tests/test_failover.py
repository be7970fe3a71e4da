"""A primary SIGKILLed mid-traffic, on a Redis Cluster and under Sentinel.

While a bounded client loop enrolls residents, changes statuses and verifies codes, one primary
is killed. Verify must answer throughout (from the token alone, ``checked_online: false``, while
its slot has no primary); writes answer 2xx or 503 with Retry-After, never anything else; after
the failover writes succeed again in the same app (no restart); and every write acknowledged
with 2xx is in the store afterwards with its status version.

Each test starts its own topology (the session's is shared with other tests) with short
failure detection (cluster-node-timeout 1500 ms, sentinel down-after 1000 ms).
"""
from __future__ import annotations

import itertools
import random
import threading
import time

import pytest

from healthcode import create_app
from tests.conftest import RESIDENT, Credentials
from tests.support import REPO, RedisCluster, RedisSentinel

#: the whole test, failover included, stays under this
BUDGET_SECONDS = 60
#: once writes work again, this many more must succeed before the loop stops
WRITES_AFTER_RECOVERY = 30


class Traffic:
    """One client's loop of enrollments, status changes and verifies, with what it was told."""

    def __init__(self, client, creds):
        self.client = client
        self.creds = creds
        self.numbers = itertools.count(1)
        self.acked: dict[str, tuple[str, int]] = {}  # sid -> (status, version) acknowledged
        self.codes: list[str] = []  # codes of the residents in verify_only
        self.verify_only: set[str] = set()  # residents whose status the loop never changes
        self.counts = {"enroll_ok": 0, "change_ok": 0, "write_503": 0, "verify_online": 0,
                       "verify_offline": 0}
        self.unexpected: list[str] = []
        self.last_503 = 0.0
        self.first_ok_after_503: float | None = None

    def enroll(self) -> str | None:
        body = {**RESIDENT, "document": {"type": "passport", "number": f"F{next(self.numbers)}",
                                         "region": "MO"}}
        answer = self.client.post("/api/v1/residents", json=body, headers=self.creds.authority)
        if answer.status_code == 201:
            self.counts["enroll_ok"] += 1
            sid = answer.get_json()["id"]
            self.acked[sid] = ("green", answer.get_json()["status_version"])
            self._recovered()
            return sid
        self._refused(answer, "enroll")
        return None

    def change(self, sid: str) -> None:
        status = random.choice(["yellow", "red", "green"])
        body = {"status": status, "reason": {"green": "negative_test", "yellow": "close_contact",
                                             "red": "positive_test"}[status]}
        answer = self.client.put(f"/api/v1/residents/{sid}/status", json=body,
                                 headers=self.creds.authority)
        if answer.status_code == 200:
            self.counts["change_ok"] += 1
            self.acked[sid] = (status, answer.get_json()["status_version"])
            self._recovered()
        else:
            self._refused(answer, "status change")

    def verify(self, code: str) -> None:
        answer = self.client.post("/api/v1/verify", json={"code": code},
                                  headers=self.creds.checkpoint)
        body = answer.get_json()
        if answer.status_code != 200 or body["valid"] is not True:
            self.unexpected.append(f"verify answered {answer.status_code} {body}")
            return
        self.counts["verify_online" if body["checked_online"] else "verify_offline"] += 1

    def _refused(self, answer, what: str) -> None:
        body = answer.get_json() or {}
        if answer.status_code == 503 and body.get("error") == "store_unavailable" and \
                int(answer.headers.get("Retry-After", "0")) > 0:
            self.counts["write_503"] += 1
            self.last_503 = time.monotonic()
            self.first_ok_after_503 = None
        else:
            self.unexpected.append(f"{what} answered {answer.status_code} {body}")

    def _recovered(self) -> None:
        if self.last_503 and self.first_ok_after_503 is None:
            self.first_ok_after_503 = time.monotonic()

    def step(self) -> None:
        """One round: an enrollment, a status change of an acknowledged resident, two verifies."""
        self.enroll()
        changeable = [sid for sid in self.acked if sid not in self.verify_only]
        if changeable:
            self.change(random.choice(changeable))
        for code in random.sample(self.codes, min(2, len(self.codes))):
            self.verify(code)


def _topology(kind: str):
    if kind == "cluster":  # nodes configured as deploy/ recommends (AOF everysec, noeviction)
        return RedisCluster(node_timeout=1500, conf=str(REPO / "deploy" / "redis-cluster.conf"))
    return RedisSentinel(down_after=1000)


def _primary_to_kill(topology, kind: str):
    if kind == "sentinel":
        return topology.primary_node()
    return random.choice(topology.primary_nodes())


@pytest.mark.parametrize("kind", ["cluster", "sentinel"])
def test_a_primary_killed_mid_traffic_loses_no_acknowledged_write(kind, tmp_path):
    started = time.monotonic()
    topology = _topology(kind)
    topology.start()
    try:
        app = create_app({"TESTING": True, "REDIS_URL": topology.url, "DATA_DIR": str(tmp_path),
                          "ISSUER": "HC-TEST", "SUBJECT_SECRET": "failover-subject-secret-01",
                          "SECRET_KEY": "failover-session-secret-01", "REDIS_TIMEOUT": 0.3,
                          "CREDENTIAL_CACHE_SECONDS": 1})
        client = app.test_client()
        creds = Credentials(app)
        traffic = Traffic(client, creds)
        # residents to verify: spread over every slot range, their codes fetched beforehand
        for _ in range(12):
            sid = traffic.enroll()
            traffic.verify_only.add(sid)
            traffic.codes.append(client.get(f"/api/v1/residents/{sid}/code",
                                            headers=creds.authority).get_json()["code"])
        for _ in range(10):
            traffic.step()

        stop = threading.Event()
        errors: list[BaseException] = []

        def loop():
            try:
                while not stop.is_set():
                    traffic.step()
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        worker = threading.Thread(target=loop, daemon=True)
        worker.start()
        time.sleep(1.0)
        victim = _primary_to_kill(topology, kind)
        before = dict(traffic.counts)
        victim.kill()
        killed_at = time.monotonic()

        # the loop runs until writes have succeeded again for a while, within the budget;
        # meanwhile /readyz is asked what it sees
        deadline = started + BUDGET_SECONDS - 8
        probe = app.test_client()
        seen = []
        while time.monotonic() < deadline and not errors:
            ready = probe.get("/readyz")
            seen.append((ready.status_code, ready.get_json()["redis"]))
            recovered = traffic.first_ok_after_503
            if recovered and traffic.counts["enroll_ok"] + traffic.counts["change_ok"] >= \
                    before["enroll_ok"] + before["change_ok"] + WRITES_AFTER_RECOVERY and \
                    time.monotonic() - traffic.last_503 > 2:
                break
            time.sleep(0.1)
        stop.set()
        worker.join(10)
        assert not errors, errors
        counts = traffic.counts
        print(f"\n{kind} failover: {counts}, writes refused for "
              f"{(traffic.first_ok_after_503 or 0) - killed_at:.1f} s after the kill; "
              f"{len(traffic.acked)} residents acknowledged")
        assert not traffic.unexpected, traffic.unexpected[:5]
        assert counts["write_503"] > 0, "the kill never made a write fail: nothing was tested"
        assert traffic.first_ok_after_503, "writes did not succeed again after the failover"
        assert counts["verify_offline"] > 0, "no verify ran while a slot had no primary"
        final = probe.get("/readyz").get_json()["redis"]
        if kind == "cluster":  # readyz saw the slots without a primary, then whole again
            assert any(not redis["complete"] for _, redis in seen), seen[:3]
            assert all(code == 200 for code, _ in seen)  # a partial cluster stays ready
            assert final["complete"] and (final["primaries"], final["replicas"]) == (3, 2), final
        else:
            assert final["complete"] and final["replicas"] == 0, final  # the replica took over

        # every acknowledged write is there, with its version, read back through the app
        store = app.extensions["healthcode.store"]
        for sid, (status, version) in traffic.acked.items():
            shown = client.get(f"/api/v1/residents/{sid}", headers=creds.authority)
            assert shown.status_code == 200, (sid, shown.get_json())
            assert shown.get_json()["status_version"] >= version
            entries = {(e["to"], e["version"]) for e in store.history(sid)}
            assert (status, version) in entries, (sid, status, version)
        assert time.monotonic() - started < BUDGET_SECONDS
    finally:
        topology.close()
