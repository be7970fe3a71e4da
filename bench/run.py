"""healthcode benchmark: every figure is reported next to a floor measured in the same run.

    python bench/run.py                       # everything, ~3 minutes
    python bench/run.py --only verify,qr      # some sections
    python bench/run.py --seconds 5 --residents 10000

Sections:
  verify    POST /api/v1/verify under gunicorn vs. a floor app (pyjwt decode with a cached key
            plus one Redis HGETALL) under the same gunicorn settings; target ratio >= 0.8
  codes     GET /api/v1/residents/<id>/code as JSON, PNG (one resident: cached token and image)
            and PNG across many residents (each one signed and rendered)
  qr        QR version and PNG render time of the native code vs. a naive 10-claim JWT;
            target <= 15 ms median per PNG
  memory    Redis memory per enrolled resident for N residents; target <= 160 bytes for the
            key read on every verify; the full record reported too
  convert   POST /api/v1/convert of a partner (mo) JWT into our code, against the same floor
  decoders  decode+verify per core for each real scheme's adapter vs. a minimal decoder
            (--trust-lists: with the shared real trust lists loaded; see also
            bench/trust_startup.py for start-up with them)

Load comes from wrk (Debian package ``wrk``) on 127.0.0.1 only, bounded by --seconds. The
server runs gunicorn with the settings of ``healthcode serve`` against a private redis-server.
Rounds of the floor and of healthcode alternate, and the best round of each is compared, so a
noisy neighbour on this shared machine hurts both alike.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.support import RedisProcess, free_port  # noqa: E402

ISSUER = "HC-BENCH"
# on a shared Redis a host never makes secrets up (README "Many hosts"): the bench sets them
SUBJECT_SECRET = "bench-subject-secret-0123456789"
SESSION_SECRET = "bench-session-secret-0123456789"
#: the record key ring a shared-Redis host needs (HEALTHCODE_RECORD_KEY form)
RECORD_KEY = "1:YmVuY2gtcmVjb3JkLWtleS0wMTIzNDU2Nzg5YWJjZGU"


def shared_redis_secrets() -> None:
    """Give apps this process builds on a shared Redis the secrets such a host must be given
    (it makes none up), unless the environment already names them."""
    for name, value in (("HEALTHCODE_SUBJECT_SECRET", SUBJECT_SECRET),
                        ("HEALTHCODE_SECRET_KEY", SESSION_SECRET),
                        ("HEALTHCODE_RECORD_KEY", RECORD_KEY)):
        os.environ.setdefault(name, value)


def log(message: str) -> None:
    print(message, flush=True)


# -- servers and load ------------------------------------------------------------------------

class Gunicorn:
    """gunicorn with healthcode's own config file, on a free loopback port."""

    def __init__(self, target: str, env: dict, workers: int):
        self.port = free_port()
        self.env = {**os.environ, **env, "HEALTHCODE_BIND": f"127.0.0.1:{self.port}",
                    "HEALTHCODE_WORKERS": str(workers), "HEALTHCODE_LOG_LEVEL": "warning"}
        self.target = target
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:healthcode.gunicorn_conf",
             "--access-logfile", "/dev/null", self.target],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import urllib.request
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stderr.read().decode())
                time.sleep(0.2)
        raise RuntimeError(f"{self.target} did not start")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(30)


def wrk(url: str, seconds: float, connections: int, script: str, env: dict) -> dict:
    """One wrk run; requests/s and latency percentiles in ms."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s",
         str(HERE / script), url],
        env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": percentiles.get("50"), "p99_ms": percentiles.get("99"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else None}


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


# -- set-up ----------------------------------------------------------------------------------

def install_partner(data_dir: Path) -> str:
    """The example Macau partner: its mapping file, a trusted key, and one of its codes."""
    return install_partner_issuer(data_dir)("H7654321")


def install_partner_issuer(data_dir: Path):
    """The example Macau partner's mapping file and trusted key; returns a function that signs
    one of its codes for a travel permit number."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from healthcode.record import Record
    from mapping import Signer
    from mapping.partner_jwt import PartnerJWTAdapter
    from mapping.partner_schema import load_mapping

    (data_dir / "mappings").mkdir(parents=True, exist_ok=True)
    (data_dir / "trust").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "mapping" / "partners" / "mo.toml", data_dir / "mappings" / "mo.toml")
    mapping = load_mapping(data_dir / "mappings" / "mo.toml")
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (data_dir / "trust" / "mo.jwks.json").write_text(json.dumps(
        {"issuer": mapping.issuers[0], "scheme": "mo", "keys": [{**jwk, "kid": "mo-1"}]}))
    signer = Signer(private_key=key, kid="mo-1", issuer=mapping.issuers[0])

    def code(number: str) -> str:
        record = Record.from_dict({
            "subject": {"name": "陳大文", "birth_date": "1980-01-02",
                        "document": {"type": "travel_permit", "number": number,
                                     "region": "MO"}},
            "status": "green",
            "provenance": {"scheme": "mo", "valid_until": time.time() + 3 * 3600}})
        return PartnerJWTAdapter(mapping).encode(record, signer=signer)

    return code


def prepare(redis_url: str, data_dir: Path, residents: int) -> dict:
    from healthcode import create_app

    partner_code = install_partner(data_dir)

    app = create_app({"REDIS_URL": redis_url, "DATA_DIR": str(data_dir), "ISSUER": ISSUER,
                      "SUBJECT_SECRET": SUBJECT_SECRET, "SECRET_KEY": SESSION_SECRET,
                      "RECORD_KEY": RECORD_KEY})
    client = app.test_client()
    store = app.extensions["healthcode.store"]
    _, authority = store.create_credential("authority", label="bench")
    _, checkpoint = store.create_credential("checkpoint", label="bench")
    _, partner = store.create_credential("partner", label="bench")
    headers = {"Authorization": f"Bearer {authority}"}
    sids = []
    for i in range(residents):
        body = {"name": "陳大文", "birth_date": "1980-01-02", "status": "green",
                "document": {"type": "travel_permit", "number": f"H{i:08d}", "region": "MO"},
                "evidence": {"tests": [{"type": "pcr", "result": "negative",
                                        "sampled_at": "2026-11-27T08:00:00Z"}]}}
        response = client.post("/api/v1/residents", json=body, headers=headers)
        assert response.status_code == 201, response.get_json()
        sids.append(response.get_json()["id"])
    code = client.get(f"/api/v1/residents/{sids[0]}/code", headers=headers).get_json()["code"]
    assert client.post("/api/v1/verify", json={"code": code},
                       headers={"Authorization": f"Bearer {checkpoint}"}).get_json()["valid"]
    jwks = client.get("/.well-known/jwks.json").get_json()
    # the floor reads the same facts from a hash, with HGETALL
    store.r.hset(f"floor:{{{sids[0]}}}", mapping={"st": "green", "sv": 1})
    converted = client.post("/api/v1/convert", json={"code": partner_code, "to": "native"},
                            headers={"Authorization": f"Bearer {partner}"})
    assert converted.status_code == 200, converted.get_json()
    return {"authority": authority, "checkpoint": checkpoint, "partner": partner, "sids": sids,
            "code": code, "jwks": jwks, "store": store, "partner_code": partner_code}


# -- sections --------------------------------------------------------------------------------

def service_env(ctx) -> dict:
    return {"REDIS_URL": ctx["redis_url"], "HEALTHCODE_DATA_DIR": str(ctx["data_dir"]),
            "HEALTHCODE_ISSUER": ISSUER, "HEALTHCODE_SUBJECT_SECRET": SUBJECT_SECRET,
            "HEALTHCODE_SECRET_KEY": SESSION_SECRET,
            "HEALTHCODE_RECORD_KEY": RECORD_KEY}


def against_floor(ctx, args, label: str, path: str, body: dict, token: str,
                  target: float | None) -> dict:
    """Alternate wrk rounds of the floor app and of one healthcode endpoint; compare the best."""
    floor_body = json.dumps({"code": ctx["code"]})
    floor_env = {"REDIS_URL": ctx["redis_url"], "FLOOR_JWKS": json.dumps(ctx["jwks"]),
                 "ISSUER": ISSUER}
    ours_load = {"HC_BODY": json.dumps(body), "HC_TOKEN": token}
    floor_load = {"HC_BODY": floor_body, "HC_TOKEN": ""}
    rounds = {"floor": [], "healthcode": []}
    with Gunicorn("bench.floor_app:app", floor_env, args.workers) as floor, \
            Gunicorn("wsgi:app", service_env(ctx), args.workers) as ours:
        wrk(f"{floor.url}/verify", 1, args.connections, "post.lua", floor_load)  # warm-up
        wrk(f"{ours.url}{path}", 1, args.connections, "post.lua", ours_load)
        for _ in range(args.rounds):
            rounds["floor"].append(wrk(f"{floor.url}/verify", args.seconds, args.connections,
                                       "post.lua", floor_load))
            rounds["healthcode"].append(wrk(f"{ours.url}{path}", args.seconds,
                                            args.connections, "post.lua", ours_load))
    best = {k: max(v, key=lambda r: r["rps"]) for k, v in rounds.items()}
    for name, result in best.items():
        assert result["non_2xx"] == 0, f"{name}: {result['non_2xx']} non-2xx responses"
    ratio = best["healthcode"]["rps"] / best["floor"]["rps"]
    for name in ("floor", "healthcode"):
        log(f"{label:8s} {name:10s} {best[name]['rps']:8.0f} req/s  p50 "
            f"{best[name]['p50_ms']:.2f} ms  p99 {best[name]['p99_ms']:.2f} ms")
    goal = f" (target >= {target:.2f})" if target else ""
    log(f"{label:8s} ratio healthcode/floor = {ratio:.2f}{goal} "
        f"[all rounds: floor {[round(r['rps']) for r in rounds['floor']]}, "
        f"healthcode {[round(r['rps']) for r in rounds['healthcode']]}]")
    return {"rounds": rounds, "best": best, "ratio": ratio}


def bench_verify(ctx, args) -> dict:
    return against_floor(ctx, args, "verify", "/api/v1/verify", {"code": ctx["code"]},
                         ctx["checkpoint"], target=0.8)


def bench_convert(ctx, args) -> dict:
    """Partner JWT -> our code: decode, verify, policy, one subject read, sign, audit."""
    return against_floor(ctx, args, "convert", "/api/v1/convert",
                         {"code": ctx["partner_code"], "to": "native"}, ctx["partner"],
                         target=None)


def bench_codes(ctx, args) -> dict:
    env = service_env(ctx)
    results = {}
    paths = Path(ctx["tmp"]) / "paths.txt"
    many = ctx["sids"][1:2001]
    with Gunicorn("wsgi:app", env, args.workers) as ours:
        for name, lines in (
                ("json, one resident", [f"/api/v1/residents/{ctx['sids'][0]}/code?format=json"]),
                ("png, one resident (cached)",
                 [f"/api/v1/residents/{ctx['sids'][0]}/code?format=png"]),
                (f"png, {len(many)} residents (signed and rendered)",
                 [f"/api/v1/residents/{s}/code?format=png" for s in many])):
            paths.write_text("\n".join(lines) + "\n")
            result = wrk(ours.url, args.seconds, args.connections, "paths.lua",
                         {"HC_TOKEN": ctx["authority"], "HC_PATHS": str(paths)})
            assert result["non_2xx"] == 0, result
            results[name] = result
            log(f"codes    {name:42s} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:.2f} ms"
                f"  p99 {result['p99_ms']:.2f} ms")
    return results


def bench_qr(ctx, args) -> dict:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from healthcode import qr

    key = ec.generate_private_key(ec.SECP256R1())
    naive = jwt.encode({"iss": "https://health.example.gov.mo", "sub": "H1234567",
                        "name": "陳大文", "status": "green", "status_version": 1,
                        "document_type": "travel_permit", "document_region": "MO",
                        "birth_date": "1980-01-02", "iat": 1764300000, "exp": 1764300300},
                       key, algorithm="ES256",
                       headers={"kid": "3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s"})
    out = {}
    for name, text in (("native", ctx["code"]), ("naive 10-claim JWT", naive)):
        times = []
        for _ in range(args.qr_samples):
            start = time.perf_counter()
            qr.render(text, "png")
            times.append((time.perf_counter() - start) * 1000)
        out[name] = {"bytes": len(text.encode()), "version": qr.version(text),
                     "png_median_ms": statistics.median(times)}
        log(f"qr       {name:20s} {len(text.encode()):4d} bytes  version "
            f"{out[name]['version']:2d}  PNG median {out[name]['png_median_ms']:.1f} ms "
            f"(target <= 15 ms; {args.qr_samples} renders)")
    return out


def bench_memory(ctx, args) -> dict:
    r = ctx["store"].r
    sids = ctx["sids"]
    sample = sids[:: max(1, len(sids) // 2000)]

    def usage(part):
        return statistics.mean(r.memory_usage(f"hc:{{{s}}}:{part}", samples=0) for s in sample)

    per_key = {part: usage(part) for part in ("st", "rec", "hist")}
    per_resident_total = (ctx["used_after"] - ctx["used_before"]) / len(sids)
    log(f"memory   {len(sids)} residents: hot key hc:{{sid}}:st {per_key['st']:.0f} B "
        f"(target <= 160), record {per_key['rec']:.0f} B, history {per_key['hist']:.0f} B; "
        f"used_memory grew {per_resident_total:.0f} B per resident (all keys, audit included)")
    return {"per_key": per_key, "per_resident_used_memory": per_resident_total}


def bench_decoders(ctx, args) -> dict:
    import importlib
    out = {}
    for name in ("decode_eu_dcc", "decode_shc", "decode_icao_vds"):
        try:
            module = importlib.import_module(f"bench.{name}")
        except ImportError as exc:
            log(f"decoders {name}: not available ({exc})")
            continue
        if args.trust_lists and name != "decode_icao_vds":
            out[name] = module.run(args.decoder_seconds, trust_lists=True)
        else:
            out[name] = module.run(args.decoder_seconds)
        log(f"decoders {name}: {json.dumps(out[name])}")
    return out


SECTIONS = {"verify": bench_verify, "convert": bench_convert, "codes": bench_codes,
            "qr": bench_qr, "memory": bench_memory, "decoders": bench_decoders}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--seconds", type=float, default=8, help="per wrk round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--qr-samples", type=int, default=200)
    parser.add_argument("--decoder-seconds", type=float, default=3)
    parser.add_argument("--trust-lists", action="store_true",
                        help="decoders: load the shared real trust lists into the stores")
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    if not shutil.which("wrk") and {"verify", "convert", "codes"} & set(sections):
        parser.error("wrk is needed for the HTTP sections: apt-get install wrk")

    log(f"healthcode bench, {datetime.now(timezone.utc):%Y-%m-%d %H:%M}Z, {os.cpu_count()} CPUs,"
        f" command: {' '.join([Path(sys.argv[0]).name] + (argv or sys.argv[1:]))}")
    results = {}
    redis = RedisProcess()
    redis.start()
    tmp = tempfile.mkdtemp(prefix="healthcode-bench-")
    try:
        ctx = {"redis_url": redis.url, "data_dir": Path(tmp) / "data", "tmp": tmp}
        residents = args.residents if "memory" in sections else 2001
        import redis as redis_lib
        client = redis_lib.Redis.from_url(redis.url)
        ctx["used_before"] = client.info("memory")["used_memory"]
        start = time.perf_counter()
        ctx.update(prepare(redis.url, ctx["data_dir"], residents))
        ctx["used_after"] = client.info("memory")["used_memory"]
        log(f"setup    enrolled {residents} residents through the API in "
            f"{time.perf_counter() - start:.0f} s")
        for section in sections:
            results[section] = SECTIONS[section](ctx, args)
    finally:
        redis.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
