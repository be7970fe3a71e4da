"""healthcode capacity: memory per resident, bulk import rate, hosts and primaries for a province.

    python bench/capacity.py                          # 1,000,000 residents, everything
    python bench/capacity.py --residents 200000 --only memory,import
    python bench/capacity.py --only verify --seconds 5

Sections (issue 8, "Performance and capacity"):
  memory   (c) Redis memory per resident at N enrolled residents with realistic records (hot
           key, sealed full record, history of the residents whose status changed, audit
           entries), from INFO used_memory deltas and MEMORY USAGE samples, extrapolated to
           120 million residents and to primaries of 25 GB; goals <= 600 B all told and <= 100 B
           for the hot key read on every verify
  import   (d) bulk import rate (`healthcode residents import`'s code path: parse, validate,
           seal, pipelined scripts per primary, audit) into the single Redis of the memory
           section, and into a 3-primary cluster with replicas (WAIT on) started here; each
           against a floor measured in the same run: pipelined SETs of the same sealed values
           (the least a client can make Redis do per resident); goal >= 20,000 a second
  verify   POST /api/v1/verify per gunicorn worker and for a 2-core host (workers = cores + 1,
           as `healthcode serve` runs), and GETs per second one Redis primary answers
           (redis-benchmark), the inputs of:
  hosts    (e) how many 2-core hosts and Redis primaries serve 23,300 verifications a second
           (January 2022's reported peak) and ten times that, with the arithmetic

Everything runs on 127.0.0.1 against private redis-servers started here, bounded in time.
The machine is shared: absolute rates are noisy, so each rate is printed with its floor and
the load average; the memory figures do not depend on load.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.run import Gunicorn, log, wrk  # noqa: E402
from tests.support import RedisCluster, RedisProcess  # noqa: E402

ISSUER = "HC-BENCH"
SECRET = "bench-subject-secret-0123456789"
RECORD_KEY = "1:" + "YmVuY2gtcmVjb3JkLWtleS0wMTIzNDU2Nzg5YWJjZGU"
PROVINCE = 120_000_000
PRIMARY_BYTES = 25 * 10**9
PEAK = 23_300

SURNAMES = "陳李張黃何梁林周吳劉鄭楊謝郭曾羅蔡許馮鄧蕭葉潘杜"
GIVEN = "大文明華偉芳娟敏靜麗強軍平剛桂英玉蘭秀霞志勇家豪嘉欣子軒"
PRODUCTS = [("EU/1/20/1528", "ORG-100030215"), ("EU/1/20/1507", "ORG-100031184"),
            ("CoronaVac", "Sinovac-Biotech"), ("BBIBP-CorV", "ORG-100020693")]


def resident(i: int, rng: random.Random) -> dict:
    """A realistic enrollment body: every resident has a name, birth date and document; 70 %
    a recent test, 60 % two or three vaccinations, 3 % a yellow or red status."""
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    body = {"name": name, "birth_date": f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-"
                                        f"{rng.randint(1, 28):02d}",
            "document": {"type": rng.choice(("travel_permit", "id_card", "passport")),
                         "number": f"{rng.choice('HMP')}{i:08d}", "region":
                         rng.choice(("MO", "MO", "HK", "GD"))},
            "status": "green"}
    if rng.random() < 0.3:
        body["name_latin"] = f"Chan Tai Man {i % 1000}"
    roll = rng.random()
    if roll < 0.02:
        body.update(status="yellow", reasons=["travel_from_risk_area"])
    elif roll < 0.03:
        body.update(status="red", reasons=["close_contact"])
    evidence = {}
    if rng.random() < 0.7:
        evidence["tests"] = [{"type": rng.choice(("pcr", "rat")), "result": "negative",
                              "sampled_at": f"2026-11-{rng.randint(1, 28):02d}T"
                                            f"{rng.randint(0, 23):02d}:00:00Z"}]
    if rng.random() < 0.6:
        product, maker = rng.choice(PRODUCTS)
        doses = rng.choice((2, 3))
        evidence["vaccinations"] = [
            {"product": product, "manufacturer": maker, "dose_number": d, "series_doses": 2,
             "administered_on": f"2021-{2 + 3 * d:02d}-{rng.randint(1, 28):02d}",
             "lot": f"{rng.choice('ABEF')}{rng.randint(1000, 9999)}", "country": "MO"}
            for d in range(1, doses + 1)]
    if evidence:
        body["evidence"] = evidence
    return body


def lines(count: int, seed: int = 1):
    rng = random.Random(seed)
    for i in range(count):
        yield (json.dumps(resident(i, rng), ensure_ascii=False) + "\n").encode()


def make_store(url: str, **options):
    from healthcode.recordcrypt import RecordCipher, parse_ring
    from healthcode.store import RedisStore
    return RedisStore.from_url(url, timeout=5.0, cipher=RecordCipher(parse_ring(
        RECORD_KEY, "bench")), wait_timeout=1000, **options)


def _cpu() -> float:
    import resource
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def import_rate(store, count: int, jobs: int, seed: int) -> dict:
    """The import's wall-clock rate, and the client CPU it spent per resident (this process
    and its parsing processes; the generator of the test lines included): on a shared
    machine the CPU figure, unlike the rate, does not depend on the neighbours' load."""
    from healthcode import bulk
    start, cpu = time.perf_counter(), _cpu()
    counts = bulk.import_stream(store, lines(count, seed), "operator:bench", SECRET.encode(),
                                jobs=jobs)
    seconds = time.perf_counter() - start
    spent = _cpu() - cpu
    assert counts["enrolled"] == count, counts
    # what making the test lines costs (included above; a real import reads a file instead)
    sample = min(count, 100_000)
    cpu = _cpu()
    for _ in lines(sample, seed):
        pass
    return {"residents": count, "seconds": seconds, "per_second": count / seconds,
            "client_cpu_us_per_resident": spent / count * 1e6,
            "generator_cpu_us_per_resident": (_cpu() - cpu) / sample * 1e6}


def floor_rate(store, count: int) -> dict:
    """Pipelined SETs of one sealed record and one status per resident, values precomputed:
    the Redis side alone, no parsing, validation, sealing, scripts or audit."""
    sealed = store.stored_record("A" * 16, {"subject": {"name": "陳大文"}}, "x", 0) * 2
    start = time.perf_counter()
    for base in range(0, count, 1000):
        keys = [f"floor:{{{base + i:016d}}}" for i in range(min(1000, count - base))]
        for indexes in store._by_node(keys):
            def build(pipe, indexes=indexes):
                for i in indexes:
                    pipe.set(keys[i] + ":st", "green|1")
                    pipe.set(keys[i] + ":rec", sealed)
            store._on_slot(keys[indexes[0]], build)
    seconds = time.perf_counter() - start
    return {"residents": count, "seconds": seconds, "per_second": count / seconds}


# -- sections ----------------------------------------------------------------------------------

def bench_memory_and_import(args, out: dict) -> None:
    from healthcode.audit import SHARDS, shard_key
    server = RedisProcess()
    server.start()
    try:
        store = make_store(server.url, wait_replicas=0)
        raw = store.r
        before = raw.info("memory")
        load = os.getloadavg()[0]
        result = import_rate(store, args.residents, args.jobs, seed=1)
        after_import = raw.info("memory")
        log(f"import   single Redis: {args.residents} residents in {result['seconds']:.1f} s = "
            f"{result['per_second']:.0f}/s (jobs={args.jobs}, load average {load:.1f}); client "
            f"CPU {result['client_cpu_us_per_resident']:.0f} us per resident (of which "
            f"{result['generator_cpu_us_per_resident']:.0f} making the test lines), so "
            f"{1e6 / result['client_cpu_us_per_resident']:.0f}/s per free core")
        out["import_single"] = result
        # status changes for a share of the residents (SCAN order is hash order: a random
        # sample), which gives them a history list
        rng = random.Random(1)
        changed = int(args.residents * args.changed)
        found = []
        for key in raw.scan_iter("hc:{*}:st", count=1000):
            found.append(key[4:20])
            if len(found) >= changed + 2000:
                break
        sids, samples = found[:changed], found[changed:]
        start = time.perf_counter()
        for sid in sids:
            store.change_status(sid, "yellow", ("travel_from_risk_area",), "authority:bench",
                                note="returned from a risk area" if rng.random() < 0.2 else None)
        log(f"memory   {changed} status changes ({args.changed:.0%} of residents) in "
            f"{time.perf_counter() - start:.1f} s")
        after = raw.info("memory")
        grown = after["used_memory"] - before["used_memory"]
        per_resident = grown / args.residents
        rss = (after["used_memory_rss"] - before["used_memory_rss"]) / args.residents

        def usage(part, among):
            found = [raw.memory_usage(f"hc:{{{s}}}:{part}", samples=0) for s in among]
            found = [f for f in found if f]
            return sum(found) / max(1, len(found))

        audit_bytes = sum(raw.memory_usage(shard_key(s), samples=0) or 0 for s in range(SHARDS))
        figures = {
            "residents": args.residents, "changed": changed,
            "used_memory_per_resident": per_resident, "rss_per_resident": rss,
            "import_only_per_resident": (after_import["used_memory"] - before["used_memory"])
            / args.residents,
            "hot_key": usage("st", samples), "record": usage("rec", samples),
            "history_of_changed": usage("hist", sids[:2000]),
            "audit_per_resident": audit_bytes / args.residents,
            "keys": raw.dbsize(),
        }
        total = per_resident * PROVINCE
        figures["province_bytes"] = total
        figures["primaries_at_25GB"] = math.ceil(total / PRIMARY_BYTES)
        out["memory"] = figures
        log(f"memory   {args.residents} residents: used_memory grew {per_resident:.0f} B per "
            f"resident all told (goal <= 600; RSS {rss:.0f} B); hot key hc:{{sid}}:st "
            f"{figures['hot_key']:.0f} B (goal <= 100), sealed record {figures['record']:.0f} B, "
            f"history {figures['history_of_changed']:.0f} B for each of the {changed} changed, "
            f"audit {figures['audit_per_resident']:.1f} B per resident")
        log(f"memory   120,000,000 residents x {per_resident:.0f} B = {total / 1e9:.1f} GB -> "
            f"ceil({total / 1e9:.1f} / 25) = {figures['primaries_at_25GB']} primaries at 25 GB "
            f"(plus one replica each for failover)")
        floor = floor_rate(store, min(args.residents, 200_000))
        out["import_single_floor"] = floor
        log(f"import   single Redis floor (pipelined SETs of ready values): "
            f"{floor['per_second']:.0f}/s; import/floor = "
            f"{result['per_second'] / floor['per_second']:.2f}")
    finally:
        server.close()


def bench_cluster_import(args, out: dict) -> None:
    cluster = RedisCluster(primaries=3)
    cluster.start()
    try:
        store = make_store(cluster.url, wait_replicas=None)  # auto: 1, it has replicas
        count = args.cluster_residents
        load = os.getloadavg()[0]
        result = import_rate(store, count, args.jobs, seed=7)
        result["wait_replicas"] = store.wait_replicas()
        out["import_cluster"] = result
        log(f"import   cluster (3 primaries + 3 replicas, WAIT {result['wait_replicas']}): "
            f"{count} residents in {result['seconds']:.1f} s = {result['per_second']:.0f}/s "
            f"(load average {load:.1f}); client CPU {result['client_cpu_us_per_resident']:.0f} "
            f"us per resident")
        floor = floor_rate(store, min(count, 100_000))
        out["import_cluster_floor"] = floor
        log(f"import   cluster floor: {floor['per_second']:.0f}/s; import/floor = "
            f"{result['per_second'] / floor['per_second']:.2f}")
    finally:
        cluster.close()


def bench_verify(args, out: dict) -> None:
    from healthcode import create_app
    server = RedisProcess()
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="healthcode-capacity-"))
    try:
        env = {"REDIS_URL": server.url, "HEALTHCODE_DATA_DIR": str(tmp),
               "HEALTHCODE_ISSUER": ISSUER, "HEALTHCODE_SUBJECT_SECRET": SECRET,
               "HEALTHCODE_SECRET_KEY": "bench-session-secret-0123456789",
               "HEALTHCODE_RECORD_KEY": RECORD_KEY}
        app = create_app({"REDIS_URL": server.url, "DATA_DIR": str(tmp), "ISSUER": ISSUER,
                          "SUBJECT_SECRET": SECRET, "RECORD_KEY": RECORD_KEY,
                          "SECRET_KEY": env["HEALTHCODE_SECRET_KEY"], "GENERATE_SECRETS": True})
        store = app.extensions["healthcode.store"]
        _, authority = store.create_credential("authority")
        _, checkpoint = store.create_credential("checkpoint")
        client = app.test_client()
        body = resident(1, random.Random(3))
        sid = client.post("/api/v1/residents", json=body, headers={
            "Authorization": f"Bearer {authority}"}).get_json()["id"]
        code = client.get(f"/api/v1/residents/{sid}/code", headers={
            "Authorization": f"Bearer {authority}"}).get_json()["code"]
        load = {"HC_BODY": json.dumps({"code": code}), "HC_TOKEN": checkpoint}
        rates = {}
        for workers in (1, (os.cpu_count() or 1) + 1):
            with Gunicorn("wsgi:app", env, workers) as ours:
                wrk(f"{ours.url}/api/v1/verify", 1, args.connections, "post.lua", load)
                best = max((wrk(f"{ours.url}/api/v1/verify", args.seconds, args.connections,
                                "post.lua", load) for _ in range(args.rounds)),
                           key=lambda r: r["rps"])
            assert best["non_2xx"] == 0, best
            rates[workers] = best
            log(f"verify   {workers} worker(s): {best['rps']:.0f} verifies/s, p99 "
                f"{best['p99_ms']:.1f} ms (load average {os.getloadavg()[0]:.1f})")
        port = server.port
        bench = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-n",
                                "200000", "-c", "50", "--csv"], capture_output=True, text=True,
                               timeout=120).stdout
        row = next(line for line in bench.splitlines() if line.startswith('"GET"'))
        gets = float(row.split(",")[1].strip('"'))
        log(f"verify   one Redis primary answers {gets:.0f} GETs/s (redis-benchmark, 50 "
            f"clients, no pipelining)")
        # a host does at least what its best configuration did (on a loaded machine more
        # workers can measure slower than one)
        out["verify"] = {"per_worker": rates[1]["rps"],
                         "per_host": max(r["rps"] for r in rates.values()),
                         "by_workers": {w: r["rps"] for w, r in rates.items()},
                         "redis_gets_per_second": gets}
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


def hosts_table(out: dict) -> None:
    verify = out.get("verify")
    memory = out.get("memory")
    if not verify:
        log("hosts    needs the verify section")
        return
    per_host = verify["per_host"]
    gets = verify["redis_gets_per_second"]
    log("hosts    each online verify is one GET of the hot key on the primary owning the "
        "subject's slot; a 2-core host runs cores+1 workers")
    log(f"hosts    {'verifies/s':>12} {'2-core hosts':>14} {'primaries (GETs)':>18} "
        f"{'primaries (memory)':>20}")
    rows = []
    for target in (PEAK, 10 * PEAK):
        hosts = math.ceil(target / per_host)
        by_gets = math.ceil(target / (gets * 0.5))  # run primaries at half their GET rate
        by_memory = memory["primaries_at_25GB"] if memory else None
        rows.append({"verifies_per_second": target, "hosts": hosts,
                     "primaries_for_gets": by_gets, "primaries_for_memory": by_memory})
        log(f"hosts    {target:>12,} {hosts:>14} {by_gets:>18} {by_memory!s:>20}")
        log(f"hosts      hosts = ceil({target:,} / {per_host:.0f} verifies/s per host) = {hosts};"
            f" primaries for GETs = ceil({target:,} / (0.5 x {gets:.0f})) = {by_gets}; "
            f"primaries = max(GETs, memory) = {max(by_gets, by_memory or 0)}")
    out["hosts"] = rows


SECTIONS = ("memory", "import", "verify", "hosts")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--cluster-residents", type=int, default=200_000)
    parser.add_argument("--changed", type=float, default=0.02,
                        help="share of residents given one status change (history)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args(argv)
    sections = set(args.only.split(","))
    log(f"healthcode capacity, {datetime.now(timezone.utc):%Y-%m-%d %H:%M}Z, {os.cpu_count()} "
        f"CPUs, load average {os.getloadavg()[0]:.1f}, command: "
        f"{' '.join([Path(sys.argv[0]).name] + (argv or sys.argv[1:]))}")
    os.environ.setdefault("HEALTHCODE_RECORD_KEY", RECORD_KEY)
    out: dict = {}
    if sections & {"memory", "import"}:
        bench_memory_and_import(args, out)
    if "import" in sections:
        bench_cluster_import(args, out)
    if sections & {"verify", "hosts"}:
        bench_verify(args, out)
    if "hosts" in sections:
        hosts_table(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
