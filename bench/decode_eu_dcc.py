"""EU DCC decode+verify throughput: the adapter against a floor, on one core.

The corpus is every code of the public conformance set that upstream expects to verify
(``EXPECTEDVERIFY`` true) and that the adapter accepts at the case's validation clock, with all
their DSCs in one trust store. The floor is the least code that does the same cryptographic job
(strip the prefix, base45, inflate, CBOR, Sig_structure, ES256/PS256 with a key looked up by
kid in a prepared dict, CBOR of the payload) and nothing else: no limits, no error mapping,
no validity, key usage or record. The ratio adapter/floor shows what the adapter's safety and
mapping cost; the target is >= 0.7.

Rounds of floor and adapter alternate, each over the whole corpus, so drift in CPU frequency
or load hits both alike.

    python3 bench/decode_eu_dcc.py --seconds 3 [--trust-lists]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import zlib
from pathlib import Path

import base45
import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from healthcode.record import parse_time  # noqa: E402
from healthcode.trust import TrustStore  # noqa: E402
from mapping.base import CodeError  # noqa: E402
from mapping.eu_dcc import EUDCCAdapter  # noqa: E402

TARGET_RATIO = 0.7
_ECDSA = ec.ECDSA(hashes.SHA256())
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def conformance_root() -> Path:
    """Where ``tests/support.conformance_dir`` looks, without pytest's skip machinery."""
    root = Path(os.environ.get("HEALTHCODE_CONFORMANCE_DIR", REPO.parent / "shared" /
                               "conformance")) / "eudcc"
    if not root.is_dir():
        raise FileNotFoundError(f"conformance data {root} is missing (github.com/eu-digital-"
                                f"green-certificates/dgc-testdata); set "
                                f"HEALTHCODE_CONFORMANCE_DIR")
    return root


def load_corpus(adapter: EUDCCAdapter):
    """(trust store, [(code, clock)], {kid: public key}) of the verifiable conformance codes."""
    trust = TrustStore()
    candidates = []
    root = conformance_root()
    for path in sorted(root.glob("**/2DCode/[Rr]aw/*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        if case.get("EXPECTEDRESULTS", {}).get("EXPECTEDVERIFY") is not True:
            continue
        context = case["TESTCTX"]
        trust.add_x509(base64.b64decode(context["CERTIFICATE"]))
        candidates.append((case["PREFIX"], parse_time(context["VALIDATIONCLOCK"], "clock")))
    codes = []
    for text, clock in candidates:
        try:  # only codes the adapter accepts: a rejection takes a different, shorter path
            adapter.decode(text, trust=trust, at=clock)
        except CodeError:
            continue
        codes.append((text, clock))
    keys = {c.dcc_kid: c.public_key for c in trust.certificates()}
    return trust, codes, keys


def floor_decode(text: str, keys: dict):
    """The least code that decodes and verifies one DCC (see the module docstring)."""
    message = cbor2.loads(zlib.decompress(base45.b45decode(text[4:])))
    while isinstance(message, cbor2.CBORTag):
        message = message.value
    protected, unprotected, payload, signature = message
    header = cbor2.loads(protected) if protected else {}
    kid = header.get(4) or unprotected.get(4)
    alg = header.get(1) or unprotected.get(1)
    signed = cbor2.dumps(["Signature1", protected, b"", payload])
    key = keys[kid]
    if alg == -7:
        key.verify(encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                        int.from_bytes(signature[32:], "big")), signed, _ECDSA)
    else:
        key.verify(signature, signed, _PSS, hashes.SHA256())
    return cbor2.loads(payload)


def _round_floor(codes, keys) -> float:
    start = time.perf_counter()
    for text, _ in codes:
        floor_decode(text, keys)
    return time.perf_counter() - start


def _round_adapter(adapter, codes, trust) -> float:
    start = time.perf_counter()
    for text, clock in codes:
        adapter.decode(text, trust=trust, at=clock)
    return time.perf_counter() - start


def run(seconds: float = 3.0, trust_lists: bool = False) -> dict:
    """Measure for about ``seconds``; return per-second figures and the adapter/floor ratio.

    ``trust_lists``: the adapter's store also holds the shared real trust lists
    (:mod:`bench.trust_lists`), as a deployment's would; lookups stay by kid.
    """
    adapter = EUDCCAdapter()
    trust, codes, keys = load_corpus(adapter)
    if trust_lists:
        from bench.trust_lists import load_shared_lists
        load_shared_lists(trust)
    if not codes:
        raise FileNotFoundError("no verifiable codes in the conformance set")
    _round_floor(codes, keys)  # warm-up: imports, key caches, the adapter's kid index
    _round_adapter(adapter, codes, trust)
    floor_time = adapter_time = 0.0
    rounds = 0
    deadline = time.perf_counter() + seconds
    while rounds < 2 or time.perf_counter() < deadline:
        floor_time += _round_floor(codes, keys)
        adapter_time += _round_adapter(adapter, codes, trust)
        rounds += 1
    decodes = rounds * len(codes)
    floor_rate = decodes / floor_time
    adapter_rate = decodes / adapter_time
    return {"scheme": "eu-dcc", "codes": len(codes), "rounds": rounds,
            "floor_per_second": floor_rate, "adapter_per_second": adapter_rate,
            "ratio": adapter_rate / floor_rate, "target_ratio": TARGET_RATIO,
            "trust_certificates": len(trust.certificates())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to measure")
    parser.add_argument("--trust-lists", action="store_true",
                        help="also load the shared real trust lists into the adapter's store")
    args = parser.parse_args(argv)
    result = run(args.seconds, trust_lists=args.trust_lists)
    print(f"eu-dcc decode+verify, {result['codes']} codes x {result['rounds']} rounds, one core,"
          f" {result['trust_certificates']} trusted certificates")
    print(f"  floor:   {result['floor_per_second']:8.0f} /s")
    print(f"  adapter: {result['adapter_per_second']:8.0f} /s")
    print(f"  ratio adapter/floor: {result['ratio']:.2f} (target >= {TARGET_RATIO})")
    return 0 if result["ratio"] >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
