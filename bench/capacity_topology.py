"""Redis topologies: what a cluster costs a verify, and what each operation costs Redis.

    python bench/capacity_topology.py                      # both parts, ~3 minutes
    python bench/capacity_topology.py --only commands --ops 300

Parts:
  verify    POST /api/v1/verify throughput under gunicorn (the settings of ``healthcode serve``)
            against a local Redis Cluster of 3 primaries (3 replicas) divided by the same against
            a single Redis, in one run: short wrk rounds of the two alternate (bench/rounds.py's
            reasoning); reported as the ratio of the best rounds and as the median ratio of
            neighbouring rounds. The codes of 500 residents are
            verified in turn, so the reads spread over every primary. Goal >= 0.9.
  commands  Redis commands and round trips per verify, enrollment, status change and
            conversion (a first conversion, which enrolls the traveller, and a repeat), on a
            single Redis, the cluster and Sentinel: commands from ``INFO commandstats`` deltas
            summed over every primary, round trips counted at the client's socket writes (a
            MULTI ... EXEC pipeline is one). Run in-process through the Flask test client;
            commands that replicas and sentinels send (REPLCONF, PING, PUBLISH) are left out.

Every server is started here on 127.0.0.1 (tests/support.py), bounded by --seconds and --ops.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.run import (ISSUER, RECORD_KEY, SESSION_SECRET, SUBJECT_SECRET,  # noqa: E402
                       Gunicorn, install_partner_issuer, log, wrk)
from tests.support import RedisCluster, RedisProcess, RedisSentinel  # noqa: E402

RESIDENT = {"name": "陳大文", "birth_date": "1980-01-02", "status": "green",
            "evidence": {"tests": [{"type": "pcr", "result": "negative",
                                    "sampled_at": "2026-11-27T08:00:00Z"}]}}


def _body(number: str) -> dict:
    return {**RESIDENT, "document": {"type": "travel_permit", "number": number, "region": "MO"}}


def _app(url: str, data_dir: Path):
    from healthcode import create_app

    return create_app({"REDIS_URL": url, "DATA_DIR": str(data_dir), "ISSUER": ISSUER,
                       "SUBJECT_SECRET": SUBJECT_SECRET, "SECRET_KEY": SESSION_SECRET,
                      "RECORD_KEY": RECORD_KEY})


def _primaries(topology) -> list:
    """Plain clients of every primary of a test topology."""
    import redis

    if isinstance(topology, RedisCluster):
        return [n.client() for n in topology.primary_nodes()]
    if isinstance(topology, RedisSentinel):
        return [topology.primary_node().client()]
    return [redis.Redis(port=topology.port, decode_responses=True)]


def _commandstats(clients) -> Counter:
    total = Counter()
    for client in clients:
        for name, stats in client.info("commandstats").items():
            total[name.removeprefix("cmdstat_")] += int(stats["calls"])
    return total


class RoundTrips:
    """Counts socket writes of the service's Redis connections: one per round trip."""

    def __init__(self):
        from redis.connection import AbstractConnection

        self.count = 0
        self._original = AbstractConnection.send_packed_command
        counter = self

        def counted(conn, command, check_health=True):
            counter.count += 1
            return counter._original(conn, command, check_health)

        AbstractConnection.send_packed_command = counted

    def close(self):
        from redis.connection import AbstractConnection

        AbstractConnection.send_packed_command = self._original


# -- (a) verify throughput: cluster / single ---------------------------------------------------

def _verify_setup(url: str, data_dir: Path, residents: int, bodies: Path) -> str:
    """Enroll residents through the API; write their codes as verify bodies; return a
    checkpoint token of this store."""
    app = _app(url, data_dir)
    client = app.test_client()
    store = app.extensions["healthcode.store"]
    _, authority = store.create_credential("authority", label="bench")
    _, checkpoint = store.create_credential("checkpoint", label="bench")
    headers = {"Authorization": f"Bearer {authority}"}
    lines = []
    for i in range(residents):
        sid = client.post("/api/v1/residents", json=_body(f"V{i:08d}"),
                          headers=headers).get_json()["id"]
        code = client.get(f"/api/v1/residents/{sid}/code", headers=headers).get_json()["code"]
        lines.append(json.dumps({"code": code}))
    bodies.write_text("\n".join(lines) + "\n")
    check = client.post("/api/v1/verify", json=json.loads(lines[0]),
                        headers={"Authorization": f"Bearer {checkpoint}"}).get_json()
    assert check["valid"] and check["checked_online"], check
    return checkpoint


def part_verify(args, tmp: Path) -> dict:
    single = RedisProcess()
    single.start()
    cluster = RedisCluster()
    try:
        cluster.start()
        setups = {}
        for name, server in (("single", single), ("cluster", cluster)):
            data_dir = tmp / f"verify-{name}"
            bodies = tmp / f"bodies-{name}.txt"
            token = _verify_setup(server.url, data_dir, args.residents, bodies)
            setups[name] = {"url": server.url, "data_dir": data_dir, "bodies": bodies,
                            "token": token}
        rounds = {"single": [], "cluster": []}
        servers = {name: Gunicorn("wsgi:app", {
            "REDIS_URL": s["url"], "HEALTHCODE_DATA_DIR": str(s["data_dir"]),
            "HEALTHCODE_ISSUER": ISSUER, "HEALTHCODE_SUBJECT_SECRET": SUBJECT_SECRET,
            "HEALTHCODE_SECRET_KEY": SESSION_SECRET,
            "HEALTHCODE_RECORD_KEY": RECORD_KEY}, args.workers) for name, s in setups.items()}
        with servers["single"] as one, servers["cluster"] as many:
            urls = {"single": one.url, "cluster": many.url}

            def load(name, seconds):
                return wrk(f"{urls[name]}/api/v1/verify", seconds, args.connections,
                           "post_many.lua", {"HC_BODIES": str(setups[name]["bodies"]),
                                             "HC_TOKEN": setups[name]["token"]})

            for name in rounds:  # warm-up: connections, slot tables, caches
                load(name, 1)
            for _ in range(args.rounds):
                for name in rounds:
                    rounds[name].append(load(name, args.seconds))
        best = {k: max(v, key=lambda r: r["rps"]) for k, v in rounds.items()}
        for name, result in best.items():
            assert result["non_2xx"] == 0, f"{name}: {result['non_2xx']} non-2xx responses"
            log(f"verify   {name:8s} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:.2f} ms  "
                f"p99 {result['p99_ms']:.2f} ms")
        ratio = best["cluster"]["rps"] / best["single"]["rps"]
        # each cluster round against the single round just before it: neighbours in time share
        # the machine's load, so the median of these pairs resists a noisy neighbour best
        paired = statistics.median(c["rps"] / s["rps"]
                                   for s, c in zip(rounds["single"], rounds["cluster"]))
        log(f"verify   ratio cluster/single = {ratio:.2f} best rounds, {paired:.2f} median of "
            f"paired rounds (goal >= 0.90) [all rounds: "
            + ", ".join(f"{k} {[round(r['rps']) for r in v]}" for k, v in rounds.items()) + "]")
        return {"rounds": rounds, "best": best, "ratio": ratio, "paired_median_ratio": paired}
    finally:
        single.close()
        cluster.close()


# -- (b) commands and round trips per operation ------------------------------------------------

def _operations(app, partner_code, ops: int):
    """(name, callable) per operation, each callable doing one of it; set-up done here."""
    client = app.test_client()
    store = app.extensions["healthcode.store"]
    authority = {"Authorization": f"Bearer {store.create_credential('authority')[1]}"}
    checkpoint = {"Authorization": f"Bearer {store.create_credential('checkpoint')[1]}"}
    partner = {"Authorization": f"Bearer {store.create_credential('partner')[1]}"}
    sids, codes = [], []
    for i in range(ops):
        sid = client.post("/api/v1/residents", json=_body(f"C{i:08d}"),
                          headers=authority).get_json()["id"]
        sids.append(sid)
        codes.append(client.get(f"/api/v1/residents/{sid}/code",
                                headers=authority).get_json()["code"])
    first = [partner_code(f"P{i:08d}") for i in range(ops)]
    repeat = partner_code("P99999999")
    assert client.post("/api/v1/convert", json={"code": repeat, "to": "native"},
                       headers=partner).status_code == 200
    counters = {"enroll": iter(range(ops)), "verify": iter(codes), "status": iter(sids),
                "first": iter(first)}

    def expect(response, status=200):
        assert response.status_code == status, response.get_json()

    return [
        ("verify", lambda: expect(client.post(
            "/api/v1/verify", json={"code": next(counters["verify"])}, headers=checkpoint))),
        ("enrollment", lambda: expect(client.post(
            "/api/v1/residents", json=_body(f"E{next(counters['enroll']):08d}"),
            headers=authority), 201)),
        ("status change", lambda: expect(client.put(
            f"/api/v1/residents/{next(counters['status'])}/status", headers=authority,
            json={"status": "yellow", "reason": "close_contact"}))),
        ("conversion (first: enrolls)", lambda: expect(client.post(
            "/api/v1/convert", json={"code": next(counters["first"]), "to": "native"},
            headers=partner))),
        ("conversion (repeat)", lambda: expect(client.post(
            "/api/v1/convert", json={"code": repeat, "to": "native"}, headers=partner))),
    ]


def part_commands(args, tmp: Path) -> dict:
    out = {}
    for name, make in (("single", RedisProcess), ("cluster", RedisCluster),
                       ("sentinel", RedisSentinel)):
        topology = make()
        topology.start()
        try:
            data_dir = tmp / f"commands-{name}"
            partner_code = install_partner_issuer(data_dir)  # read at start-up: before the app
            app = _app(topology.url, data_dir)
            operations = _operations(app, partner_code, args.ops)
            primaries = _primaries(topology)
            out[name] = {}
            for op, do in operations:
                do()  # warm: credential cache, connections to every node
                before = _commandstats(primaries)
                trips = RoundTrips()
                try:
                    for _ in range(args.ops - 1):
                        do()
                finally:
                    trips.close()
                delta = _commandstats(primaries) - before
                for other in INFRASTRUCTURE:
                    delta.pop(other, None)
                per_op = {cmd: calls / (args.ops - 1) for cmd, calls in delta.most_common()}
                out[name][op] = {"commands": sum(per_op.values()),
                                 "round_trips": trips.count / (args.ops - 1), "by_command": per_op}
                log(f"commands {name:8s} {op:28s} {out[name][op]['commands']:5.2f} commands "
                    f"{out[name][op]['round_trips']:5.2f} round trips  "
                    + " ".join(f"{c}={n:.2f}" for c, n in per_op.items()))
            for client in primaries:
                client.close()
        finally:
            topology.close()
    return out


#: commands the primaries count that the service does not send: our own INFO, replicas'
#: REPLCONF ACKs, sentinels' PING, INFO and hello PUBLISH
INFRASTRUCTURE = ("info", "replconf", "ping", "publish", "subscribe")

PARTS = {"verify": part_verify, "commands": part_commands}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS))
    parser.add_argument("--seconds", type=float, default=3, help="per wrk round")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    parser.add_argument("--residents", type=int, default=500, help="codes verified in turn")
    parser.add_argument("--ops", type=int, default=200, help="operations counted, per kind")
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args(argv)
    parts = [p for p in args.only.split(",") if p]
    if "verify" in parts and not shutil.which("wrk"):
        parser.error("wrk is needed for the verify part: apt-get install wrk")
    log(f"healthcode capacity_topology, {datetime.now(timezone.utc):%Y-%m-%d %H:%M}Z, "
        f"{os.cpu_count()} CPUs, command: "
        f"{' '.join([Path(sys.argv[0]).name] + (argv or sys.argv[1:]))}")
    tmp = Path(tempfile.mkdtemp(prefix="healthcode-capacity-"))
    results = {}
    try:
        for part in parts:
            results[part] = PARTS[part](args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
