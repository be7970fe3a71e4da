"""Benchmark: POST /api/v1/verify of an EU DCC with a checkpoint mode of 30 rules, against the
same verify without a mode, same server, same run. Target: ratio with/without >= 0.8.

The 30 rules are real ones: the first 30 General and Vaccination rules of the EU's published
set (``eu-rules``, read in place), all of which judge the code (a completed vaccination series
signed by a test DSC), given to the mode as its extra rules, with the EU value sets. The
server is gunicorn with ``healthcode serve``'s settings against a private redis-server; load
comes from wrk on 127.0.0.1, bounded by --seconds; rounds alternate, best round of each kept.

    python3 bench/modes.py [--seconds 3] [--rounds 3] [--workers 2] [--connections 8]
    python3 bench/modes.py --in-process [--seconds 3]

``--in-process`` times the same two requests through the app in this process (Flask's test
client, one thread pinned to one CPU, rounds alternating as in bench/rounds.py): no HTTP server
or load generator shares the CPU, so on a busy machine it is the steadier of the two figures.
It reports the best rounds' ratio and the median ratio of the alternating round pairs, by wall
time and by this process's CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run import Gunicorn, log, wrk  # noqa: E402
from tests.support import RedisProcess  # noqa: E402

RULE_COUNT = 30
#: A fixed record-key ring for the private data dir (a REDIS_URL host makes none itself).
RECORD_KEY = "1:" + "YmVuY2gtcmVjb3JkLWtleS0wMTIzNDU2Nzg5YWJjZGU"


def _conformance() -> Path:
    return Path(os.environ.get("HEALTHCODE_CONFORMANCE_DIR",
                               REPO.parent / "shared" / "conformance"))


def prepare(data: Path) -> str:
    """The data dir (trust, 30 rules in a mode, value sets); returns the EU DCC to verify."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from healthcode.record import Record
    from healthcode.rules.ruleset import find_rule_files, read_rule_file
    from mapping import Signer
    from mapping.eu_dcc import EUDCCAdapter

    now = datetime.now(timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "AT"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "bench DSC")])
    dsc = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
           .public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    (data / "trust").mkdir(parents=True)
    (data / "trust" / "dsc.der").write_bytes(dsc)

    rules_dir = data / "modes" / "bench-rules"
    rules_dir.mkdir(parents=True)
    chosen = []
    for path in find_rule_files(_conformance() / "eu-rules"):
        try:
            rule = read_rule_file(path)
        except Exception:  # noqa: BLE001 (the upstream-broken files)
            continue
        if rule.certificate_type in ("General", "Vaccination") and rule.type == "Acceptance":
            target = rules_dir / f"{rule.identifier}.json"
            shutil.copy(path, target)
            chosen.append(target.name)
        if len(chosen) == RULE_COUNT:
            break
    (data / "modes" / "bench.toml").write_text(
        'description = "30 EU rules"\nextra_rules = [' +
        ", ".join(f'"bench-rules/{n}"' for n in chosen) + "]\n")
    shutil.copytree(_conformance() / "eudcc-schema" / "valuesets", data / "valuesets")

    given = (now - timedelta(days=60)).date().isoformat()
    record = Record.from_dict({
        "subject": {"family_name": "Musterfrau", "given_name": "Gabriele",
                    "birth_date": "1990-02-26"},
        "evidence": {"vaccinations": [{
            "product": "EU/1/20/1528", "dose_number": 2, "series_doses": 2,
            "administered_on": given, "vaccine_type": "1119349007",
            "manufacturer": "ORG-100030215", "country": "AT"}]}})
    return EUDCCAdapter().encode(record, signer=Signer(private_key=key, kid="", issuer="AT",
                                                       certificate=dsc, country="AT"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--in-process", action="store_true",
                        help="time through the app in this process instead of gunicorn + wrk")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="healthcode-bench-modes-"))
    redis = RedisProcess()
    redis.start()
    try:
        data = tmp / "data"
        code = prepare(data)
        env = {"REDIS_URL": redis.url, "HEALTHCODE_DATA_DIR": str(data),
               "HEALTHCODE_ISSUER": "HC-BENCH",
               "HEALTHCODE_SUBJECT_SECRET": "bench-subject-secret-0123456789",
               "HEALTHCODE_RECORD_KEY": RECORD_KEY,
               "HEALTHCODE_SECRET_KEY": "bench-session-secret-0123456789",
               # throughput, not shedding: on a loaded machine queued requests would be 503s
               "HEALTHCODE_MAX_QUEUE_MS": "0"}
        from healthcode import create_app

        app = create_app({"REDIS_URL": redis.url, "DATA_DIR": str(data), "ISSUER": "HC-BENCH",
                          "SUBJECT_SECRET": "bench-subject-secret-0123456789",
                          "RECORD_KEY": RECORD_KEY,
                          "SECRET_KEY": env["HEALTHCODE_SECRET_KEY"]})
        _, token = app.extensions["healthcode.store"].create_credential("checkpoint")
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        check = client.post("/api/v1/verify", json={"code": code, "mode": "bench"},
                            headers=headers).get_json()
        results = {r["result"] for r in check["rules"]}
        assert len(check["rules"]) == RULE_COUNT and check["valid"], check
        log(f"mode 'bench': {len(check['rules'])} rules judge the code, results {results}, "
            f"status {check['status']}")
        if args.in_process:
            return _in_process(client, headers, code, args.seconds)
        loads = {"without mode": {"HC_BODY": json.dumps({"code": code}), "HC_TOKEN": token},
                 "mode of 30 rules": {"HC_BODY": json.dumps({"code": code, "mode": "bench"}),
                                      "HC_TOKEN": token}}
        rounds = {name: [] for name in loads}
        with Gunicorn("wsgi:app", env, args.workers) as server:
            url = f"{server.url}/api/v1/verify"
            for load in loads.values():
                wrk(url, 1, args.connections, "post.lua", load)  # warm-up
            for _ in range(args.rounds):
                for name, load in loads.items():
                    rounds[name].append(wrk(url, args.seconds, args.connections, "post.lua",
                                            load))
        best = {k: max(v, key=lambda r: r["rps"]) for k, v in rounds.items()}
        for name, result in best.items():
            assert result["non_2xx"] == 0, f"{name}: {result['non_2xx']} non-2xx responses"
            log(f"verify  {name:18s} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:.2f} ms"
                f"  p99 {result['p99_ms']:.2f} ms")
        ratio = best["mode of 30 rules"]["rps"] / best["without mode"]["rps"]
        pairs = [m["rps"] / p["rps"] for m, p in zip(rounds["mode of 30 rules"],
                                                      rounds["without mode"])]
        log(f"ratio with mode / without = {ratio:.2f} (best rounds; target >= 0.80), median of "
            f"round pairs {statistics.median(pairs):.2f} [all rounds: " + "; ".join(
                f"{k} {[round(r['rps']) for r in v]}" for k, v in rounds.items()) + "]")
    finally:
        redis.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _in_process(client, headers, code: str, seconds: float) -> int:
    """Rounds alternate as in bench/rounds.py; each round also reads this process's CPU time,
    which other processes on a loaded machine do not inflate as they do wall time."""
    from bench.rounds import ROUND_SECONDS, pin_to_one_cpu

    pin_to_one_cpu()
    bodies = {"without mode": {"code": code}, "mode of 30 rules": {"code": code, "mode": "bench"}}

    def post(body):
        response = client.post("/api/v1/verify", json=body, headers=headers)
        assert response.status_code == 200

    for body in bodies.values():  # warm-up
        post(body)
    rounds = max(1, round(seconds / ROUND_SECONDS))
    wall = {name: [] for name in bodies}
    cpu = {name: [] for name in bodies}
    for _ in range(rounds):
        for name, body in bodies.items():
            count, start, start_cpu = 0, time.perf_counter(), time.process_time()
            deadline = start + seconds / rounds
            while time.perf_counter() < deadline:
                post(body)
                count += 1
            wall[name].append(count / (time.perf_counter() - start))
            cpu[name].append(count / max(time.process_time() - start_cpu, 1e-9))
    mode, plain = "mode of 30 rules", "without mode"
    for name in bodies:
        log(f"verify (in process)  {name:18s} median round {statistics.median(wall[name]):7.0f}"
            f" /s  best round {max(wall[name]):7.0f} /s  CPU-time rate, best "
            f"{max(cpu[name]):7.0f} /s")
    for label, rates in (("wall time", wall), ("CPU time", cpu)):
        pairs = [m / p for m, p in zip(rates[mode], rates[plain])]
        log(f"ratio with mode / without ({label}): best rounds "
            f"{max(rates[mode]) / max(rates[plain]):.2f}, median of round pairs "
            f"{statistics.median(pairs):.2f} (target >= 0.80); {rounds} alternating rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
