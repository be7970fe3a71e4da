"""Fuzz harness: mutated codes of every scheme, through the adapters and through HTTP.

Seeds are genuine codes of each scheme: native, a partner JWT (the ``mo`` example mapping), a
SMART Health Card and an EU DCC are issued here with keys made for the run (and trusted), ICAO
VDS-NC seals come from the conformance data (``HEALTHCODE_CONFORMANCE_DIR`` or
../shared/conformance/icao; without it the scheme is reported as having no seeds). Each input
is a seed mutated one of three ways:

- as text: characters flipped, inserted, deleted, duplicated or cut; prefixes and the scheme's
  alphabet bent (base45, ``shc:/`` digits, base64url);
- the JWS header or COSE envelope rewritten (``crit`` of every shape, ``alg``, ``kid``, ``b64``,
  ``zip``), with the original signature (forged);
- the claims re-signed with the seed's own key after one value was replaced by a hostile one
  (extreme numbers, wrong types, huge strings, nesting up to 20,000 deep) or a key dropped or
  added: these reach past the signature into every claim parser, where bugs like an ``exp`` of
  2^63 live.

Through the adapters (``registry.detect`` then ``decode``) the only acceptable failure is a
:class:`~mapping.CodeError`; through HTTP (``POST /api/v1/verify`` and ``/api/v1/convert`` on
the Flask app, a private redis-server on 127.0.0.1) no answer may be a 5xx. Failing inputs are
written to ``--out`` (default: a temporary folder) to replay.

    python3 bench/fuzz.py                        # 1,000 inputs per scheme and path
    python3 bench/fuzz.py --count 100000         # the full run (HTTP is the slow half)
    python3 bench/fuzz.py --schemes native,shc --http-count 0 --seed 7

Exit status 0 only when no input crashed an adapter or drew a 5xx.
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import base45  # noqa: E402
import cbor2  # noqa: E402
import jwt  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from healthcode import recognition, tokens  # noqa: E402
from healthcode.errors import CodeError  # noqa: E402
from healthcode.keys import KeyRing  # noqa: E402
from healthcode.record import Record  # noqa: E402
from mapping import Signer  # noqa: E402
from mapping.eu_dcc import EUDCCAdapter, b45decode, decompress, parse_cose, unprefix  # noqa: E402
from mapping.partner_jwt import PartnerJWTAdapter  # noqa: E402
from mapping.partner_schema import load_mapping  # noqa: E402
from mapping.shc import SHCAdapter, jws_to_qr_text  # noqa: E402

SCHEMES = ("native", "mo", "shc", "eu-dcc", "icao-vds")
ISSUER = "HC-FUZZ"
SHC_ISSUER = "https://fuzz.example.mo/shc"
PARTNERS = REPO / "mapping" / "partners"
_DEEP = "\u0000deep\u0000"  # stands for a nesting too deep for json/cbor2 to write

POLICIES = {
    "eu-dcc": 'scheme = "eu-dcc"\n[policy]\naccept = ["green"]\nmax_validity_hours = 24\n'
              '[[policy.grant]]\nstatus = "green"\nevidence = "test"\nresult = "negative"\n'
              'within_hours = 48\n',
    "shc": 'scheme = "shc"\n[policy]\n[[policy.grant]]\nstatus = "green"\n'
           'evidence = "vaccination"\ncomplete = true\nmin_days = 14\n',
}


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


# -- hostile values -------------------------------------------------------------------------------

EXTREMES = [2**63, -2**63, 2**64 + 1, 10**400, -10**12, 0, -1, 1e308, -1e308, float("inf"),
            float("-inf"), float("nan"), 1e-320, 0.5, 2**53 + 1]
STRINGS = ["", " ", "x" * 5000, "９９", "2021-02-30", "1e309", "\u0000", "\ud800"[:0] + "\x7f",
           "9999-12-31T23:59:59+14:00", "0000-00-00", "../../etc/passwd", "<script>", "陳" * 400,
           "HC1:", "shc:/", "ey.ey.ey", "-1", "null"]
SHAPES = [None, True, False, [], {}, [1, 2], {"a": 1}, [[]], {"": None}]


def hostile(rng: random.Random):
    pick = rng.random()
    if pick < 0.35:
        return rng.choice(EXTREMES)
    if pick < 0.65:
        return rng.choice(STRINGS)
    if pick < 0.9:
        return rng.choice(SHAPES)
    return (_DEEP, rng.choice([40, 900, 1500, 5000, 20000]))


def _holes(data) -> tuple[object, list[int]]:
    """``data`` with each ``(_DEEP, n)`` stand-in replaced by a placeholder string, and the
    depths in placeholder order (the encoders below write the nesting in their place)."""
    holes: list[int] = []

    def swap(value):
        if isinstance(value, tuple) and value[:1] == (_DEEP,):
            holes.append(value[1])
            return f"{_DEEP}{len(holes) - 1}"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    return swap(data), holes


def deep_json(data) -> bytes:
    """JSON of ``data``, a ``(_DEEP, n)`` stand-in written as n nested lists."""
    swapped, holes = _holes(data)
    text = json.dumps(swapped, separators=(",", ":"), ensure_ascii=False)
    for i, depth in enumerate(holes):
        text = text.replace(json.dumps(f"{_DEEP}{i}"), "[" * depth + "]" * depth)
    return text.encode("utf-8")


def deep_cbor(data) -> bytes:
    """CBOR of ``data``, a ``(_DEEP, n)`` stand-in written as n nested one-element arrays."""
    swapped, holes = _holes(data)
    raw = cbor2.dumps(swapped)
    for i, depth in enumerate(holes):
        raw = raw.replace(cbor2.dumps(f"{_DEEP}{i}"), b"\x81" * depth + b"\x00")
    return raw


def mutate_tree(tree, rng: random.Random):
    """Replace, drop or add one value somewhere in a JSON/CBOR tree (a copy is returned)."""
    tree = _copy(tree)
    containers = []

    def walk(node):
        if isinstance(node, (dict, list)):
            containers.append(node)
            for child in (node.values() if isinstance(node, dict) else node):
                walk(child)

    walk(tree)
    if not containers:
        return hostile(rng)
    node = rng.choice(containers)
    action = rng.random()
    if isinstance(node, dict):
        keys = list(node)
        if keys and action < 0.7:
            node[rng.choice(keys)] = hostile(rng)
        elif keys and action < 0.85:
            del node[rng.choice(keys)]
        else:
            node[rng.choice(["crit", "exp", "iat", "nbf", "x", 1, 4, 6, -260, "v", "t", "r"])
                 if rng.random() < 0.8 else str(rng.random())] = hostile(rng)
    elif node and action < 0.8:
        node[rng.randrange(len(node))] = hostile(rng)
    else:
        node.append(hostile(rng))
    return tree


def _copy(tree):
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_copy(v) for v in tree]
    return tree


# -- text mutations -------------------------------------------------------------------------------

ALPHABETS = {"native": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/",
             "mo": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/",
             "shc": "0123456789/:shc\n",
             "eu-dcc": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:",
             "icao-vds": '{}[]":,0123456789abcdefghijklmnopqrstuvwxyz\\ '}
ODD = ["\u0000", "\n", "\r\n", " ", "\u200b", "é", "陳", "\ufeff", "\x7f", "%", "\\", "\""]


def mutate_text(text: str, alphabet: str, rng: random.Random) -> str:
    if not text:
        return rng.choice(ODD)
    i = rng.randrange(len(text))
    j = min(len(text), i + rng.randint(1, 40))
    op = rng.randrange(8)
    char = rng.choice(alphabet) if rng.random() < 0.8 else rng.choice(ODD)
    if op == 0:
        return text[:i] + char + text[i + 1:]
    if op == 1:
        return text[:i] + char * rng.randint(1, 8) + text[i:]
    if op == 2:
        return text[:i] + text[j:]
    if op == 3:
        return text[:i]
    if op == 4:
        return text[:j] + text[i:j] * rng.randint(1, 20) + text[j:]
    if op == 5:
        return text.swapcase() if rng.random() < 0.2 else text[::-1][:len(text) // 2] + text
    if op == 6:
        return text + rng.choice(["\n", "\n" + text, " ", "\x00", "." * rng.randint(1, 3)])
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 600)))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


HEADER_FIELDS = ["crit", "alg", "kid", "b64", "zip", "typ", "jku", "x5c", "cty", "jwk"]
HEADER_VALUES = [["exp"], ["b64"], "abc", [], [1], [{}], None, 1, "none", "HS256", "ES256",
                 "RS256", "DEF", "", "x" * 300, False, ["x", "y"], {"kty": "EC"}]


def forged_header(jws: str, rng: random.Random) -> str:
    """The JWS with a rewritten header and its original signature."""
    head, _, rest = jws.partition(".")
    try:
        header = json.loads(unb64url(head))
    except ValueError:
        header = {}
    if not isinstance(header, dict):
        header = {}
    header[rng.choice(HEADER_FIELDS)] = rng.choice(HEADER_VALUES + [hostile(rng)])
    return b64url(deep_json(header)) + "." + rest


# -- the world: keys, trust, seeds, re-signers ----------------------------------------------------

def _self_signed(key, common_name: str, country: str = "MO") -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now() - timedelta(days=30))
            .not_valid_after(now() + timedelta(days=365)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def _jwk(key, **extra) -> dict:
    return {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), **extra}


def icao_samples() -> list[str]:
    from bench.decode_icao_vds import SAMPLES, load_samples
    try:
        return load_samples() if SAMPLES else []
    except OSError:
        return []


class World:
    """A data dir with every scheme trusted, its seeds, and a way to re-sign each one."""

    def __init__(self, data: Path):
        self.data = data
        for sub in ("keys", "trust", "mappings", "policies"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        self.config = {"DATA_DIR": str(data), "ISSUER": ISSUER, "CODE_TTL": 300,
                       "CLOCK_SKEW": 60, "MAX_CODE_LENGTH": 16 * 1024}
        self.ring = KeyRing(data / "keys")
        self.ring.generate()
        # a partner (the mo example mapping), an SHC issuer, an EU DCC document signer
        shutil.copy(PARTNERS / "mo.toml", data / "mappings")
        self.mo = load_mapping(PARTNERS / "mo.toml")
        self.mo_key = ec.generate_private_key(ec.SECP256R1())
        (data / "trust" / "mo.jwks.json").write_text(json.dumps(
            {"issuer": self.mo.issuers[0], "scheme": "mo",
             "keys": [_jwk(self.mo_key, kid="mo-1")]}))
        self.shc_key = ec.generate_private_key(ec.SECP256R1())
        (data / "trust" / "shc.jwks.json").write_text(json.dumps(
            {"issuer": SHC_ISSUER, "scheme": "shc", "keys": [_jwk(self.shc_key)]}))
        self.dsc_key = ec.generate_private_key(ec.SECP256R1())
        self.dsc = _self_signed(self.dsc_key, "healthcode fuzz DSC")
        (data / "trust" / "dsc.der").write_bytes(self.dsc)
        self.icao = icao_samples()
        for i, text in enumerate(self.icao):
            seal = json.loads(text)
            seal = seal[0] if isinstance(seal, list) else seal
            (data / "trust" / f"icao-{i}.der").write_bytes(unb64url(seal["sig"]["cer"]))
        for scheme, text in POLICIES.items():
            (data / "policies" / f"{scheme}.toml").write_text(text)
        self.registry = recognition.build_registry(self.config)
        self.trust = recognition.build_trust(self.config, self.ring)
        from healthcode.policy import load_policies
        recognition.bound_native_codes(self.registry, self.config,
                                       load_policies(data / "policies", self.registry))
        self.seeds = self._seeds()

    def _seeds(self) -> dict[str, list[str]]:
        at = now()
        test = {"type": "pcr", "result": "negative", "country": "MO",
                "sampled_at": (at - timedelta(hours=5)).isoformat()}
        dose = {"product": "EU/1/20/1528", "dose_number": 2, "series_doses": 2,
                "administered_on": (at - timedelta(days=40)).date().isoformat(),
                "manufacturer": "ORG-100030215", "vaccine_type": "J07BX03", "country": "PT"}
        subject = {"name": "陳大文", "family_name": "Chan", "given_name": "Tai Man",
                   "name_latin": "CHAN TAI MAN", "birth_date": "1980-01-02"}
        seeds = {"native": [
            tokens.sign(self.ring, issuer=ISSUER, subject_id="AAAAAAAAAAAAAAAA", status=status,
                        status_version=version, masked_name="陳*文", issued_at=at, ttl=300)
            for status, version in (("green", 1), ("red", 7), ("yellow", 0))]}
        mo_record = Record.from_dict({
            "subject": {**subject, "document": {"type": sorted(self.mo.documents_encode)[0],
                                                "number": "1234567(8)", "region": "MO"}},
            "status": "green", "evidence": {"tests": [test]},
            "provenance": {"scheme": "mo", "valid_until": at + timedelta(hours=6)}})
        seeds["mo"] = [PartnerJWTAdapter(self.mo).encode(
            mo_record, signer=Signer(private_key=self.mo_key, kid="mo-1",
                                     issuer=self.mo.issuers[0]))]
        seeds["shc"] = [SHCAdapter().encode(
            Record.from_dict({"subject": subject, "evidence": {"vaccinations": [dose]}}),
            signer=Signer(private_key=self.shc_key, kid="", issuer=SHC_ISSUER))]
        signer = Signer(private_key=self.dsc_key, kid="", issuer="MO", certificate=self.dsc,
                        country="MO")
        seeds["eu-dcc"] = [EUDCCAdapter().encode(Record.from_dict(
            {"subject": subject, "evidence": evidence}), signer=signer)
            for evidence in ({"tests": [test]}, {"vaccinations": [dose]})]
        seeds["icao-vds"] = list(self.icao)
        return seeds

    # -- one mutated input ---------------------------------------------------------------------

    def mutate(self, scheme: str, rng: random.Random) -> str:
        seed = rng.choice(self.seeds[scheme])
        way = rng.random()
        if way < 0.4:
            return mutate_text(seed, ALPHABETS[scheme], rng)
        if way < 0.55 and scheme in ("native", "mo"):
            return forged_header(seed, rng)
        try:
            return self.resigned(scheme, seed, rng)
        except (ValueError, TypeError, KeyError, zlib.error, OverflowError,
                cbor2.CBOREncodeError, RecursionError):
            return mutate_text(seed, ALPHABETS[scheme], rng)

    def resigned(self, scheme: str, seed: str, rng: random.Random) -> str:
        """The seed's claims with one hostile change, signed with the seed's own key."""
        if scheme in ("native", "mo"):
            claims = json.loads(unb64url(seed.split(".")[1]))
            key, kid = ((self.ring.active.private_key, self.ring.active.kid)
                        if scheme == "native" else (self.mo_key, "mo-1"))
            header = {"kid": kid, "typ": None}
            if rng.random() < 0.1:
                header["crit"] = rng.choice(HEADER_VALUES)
            return jwt.PyJWS().encode(deep_json(mutate_tree(claims, rng)), key,
                                      algorithm="ES256", headers=header)
        if scheme == "shc":
            jws = _shc_jws(seed)
            claims = json.loads(zlib.decompress(unb64url(jws.split(".")[1]), -15))
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = deep_json(mutate_tree(claims, rng))
            compressed = compressor.compress(payload) + compressor.flush()
            kid = json.loads(unb64url(jws.split(".")[0]))["kid"]
            return jws_to_qr_text(jwt.PyJWS().encode(
                compressed, self.shc_key, algorithm="ES256",
                headers={"zip": "DEF", "kid": kid, "typ": None}))
        if scheme == "eu-dcc":
            cose = parse_cose(decompress(b45decode(unprefix(seed))))
            claims = mutate_tree(cbor2.loads(cose.payload), rng)
            return _dcc_seal(deep_cbor(claims), self.dsc_key, self.dsc)
        # icao-vds: no key of ours signs seals; the data changes, the signature stays
        seal = json.loads(seed)
        return deep_json(mutate_tree(seal, rng)).decode("utf-8")


def _shc_jws(qr_text: str) -> str:
    digits = qr_text.strip()[len("shc:/"):]
    return "".join(chr(int(digits[i:i + 2]) + 45) for i in range(0, len(digits), 2))


def _dcc_seal(payload: bytes, key, der: bytes) -> str:
    """HC1: over a COSE_Sign1 of raw CBOR claims, signed with our DSC (EUDCCAdapter's layout;
    the payload goes in as given, so a nesting cbor2 would not write survives)."""
    from mapping.eu_dcc import HEADER_ALG, HEADER_KID, _load_signer_certificate, _sign
    certificate = _load_signer_certificate(der)
    protected = cbor2.dumps({HEADER_ALG: -7, HEADER_KID: certificate.dcc_kid})
    signature = _sign(key, -7, cbor2.dumps(["Signature1", protected, b"", payload]))
    # tag 18 (0xd2) around a four-element array (0x84): protected, {} (0xa0), payload, sig
    message = (b"\xd2\x84" + cbor2.dumps(protected) + b"\xa0" + cbor2.dumps(payload)
               + cbor2.dumps(signature))
    return "HC1:" + base45.b45encode(zlib.compress(message, 9)).decode("ascii")


# -- running --------------------------------------------------------------------------------------

class Tally:
    def __init__(self):
        self.inputs = 0
        self.outcomes = Counter()
        self.failures: list[tuple[str, str]] = []
        self.seconds = 0.0

    def to_dict(self) -> dict:
        return {"inputs": self.inputs, "failures": len(self.failures),
                "seconds": round(self.seconds, 2),
                "outcomes": dict(self.outcomes.most_common(8))}


def fuzz_adapters(world: World, scheme: str, count: int, rng: random.Random) -> Tally:
    tally = Tally()
    at = datetime(2022, 6, 1, tzinfo=timezone.utc) if scheme == "icao-vds" else None
    start = time.perf_counter()
    for _ in range(count):
        text = world.mutate(scheme, rng)
        tally.inputs += 1
        try:
            adapter = world.registry.detect(text)
            if adapter is None:
                tally.outcomes["undetected"] += 1
                continue
            adapter.decode(text, trust=world.trust, at=at)
            tally.outcomes["valid"] += 1
        except CodeError as error:
            tally.outcomes[error.reason] += 1
        except Exception as error:  # the defect this harness exists to find
            tally.outcomes["CRASH"] += 1
            tally.failures.append((f"{type(error).__name__}: {error}"[:200], text))
    tally.seconds = time.perf_counter() - start
    return tally


def fuzz_http(world: World, scheme: str, count: int, rng: random.Random, app) -> Tally:
    tally = Tally()
    client = app.test_client()
    store = app.extensions["healthcode.store"]
    headers = {role: {"Authorization": f"Bearer {store.create_credential(role)[1]}"}
               for role in ("checkpoint", "partner")}
    targets = ("native", "eu-dcc", "shc", "mo")
    start = time.perf_counter()
    for i in range(count):
        text = world.mutate(scheme, rng)
        tally.inputs += 1
        if i % 2:
            response = client.post("/api/v1/verify", json={"code": text},
                                   headers=headers["checkpoint"])
        else:
            response = client.post("/api/v1/convert", json={
                "code": text, "to": targets[i // 2 % len(targets)]}, headers=headers["partner"])
        body = response.get_json(silent=True) or {}
        tally.outcomes[f"{response.status_code} {body.get('reason') or body.get('error')}"] += 1
        if response.status_code >= 500:
            tally.failures.append((f"HTTP {response.status_code}", text))
    tally.seconds = time.perf_counter() - start
    return tally


def make_app(world: World, redis_url: str):
    from healthcode import create_app
    app = create_app({**world.config, "TESTING": True, "REDIS_URL": redis_url,
                      "SUBJECT_SECRET": "fuzz-subject-secret-0123456789",
                      "CREDENTIAL_CACHE_SECONDS": 5, "LOOKUP_RATE": 10**9})
    return app


def main(argv: list[str] | None = None) -> int:
    from bench.run import shared_redis_secrets

    shared_redis_secrets()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000,
                        help="inputs per scheme through the adapters (default 1000)")
    parser.add_argument("--http-count", type=int, default=None,
                        help="inputs per scheme through HTTP (default: --count)")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", help="folder for failing inputs (default: a temporary one)")
    args = parser.parse_args(argv)
    http_count = args.count if args.http_count is None else args.http_count
    schemes = [s for s in args.schemes.split(",") if s]
    out = Path(args.out or tempfile.mkdtemp(prefix="healthcode-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)

    data = Path(tempfile.mkdtemp(prefix="healthcode-fuzz-data-"))
    redis_server = None
    report = {"seed": args.seed, "count": args.count, "http_count": http_count, "schemes": {}}
    try:
        world = World(data)
        app = None
        if http_count:
            from tests.support import RedisProcess  # a private redis-server on 127.0.0.1
            redis_server = RedisProcess()
            redis_server.start()
            app = make_app(world, redis_server.url)
        failed = 0
        for scheme in schemes:
            if not world.seeds.get(scheme):
                report["schemes"][scheme] = {"skipped": "no seed codes (ICAO seals come from "
                                                        "the conformance data)"}
                continue
            rng = random.Random(f"{args.seed}-{scheme}")
            entry = {"seeds": len(world.seeds[scheme]),
                     "adapters": fuzz_adapters(world, scheme, args.count, rng)}
            if app is not None:
                entry["http"] = fuzz_http(world, scheme, http_count, rng, app)
            for path in ("adapters", "http"):
                tally = entry.get(path)
                if tally is None:
                    continue
                for n, (what, text) in enumerate(tally.failures[:50]):
                    (out / f"{scheme}-{path}-{n}.txt").write_text(f"{what}\n{text}",
                                                                  encoding="utf-8")
                failed += len(tally.failures)
                entry[path] = tally.to_dict()
            report["schemes"][scheme] = entry
            print(json.dumps({scheme: entry}, ensure_ascii=False), flush=True)
        report["failures"] = failed
        report["failures_dir"] = str(out)
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0 if failed == 0 else 1
    finally:
        if redis_server is not None:
            redis_server.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
