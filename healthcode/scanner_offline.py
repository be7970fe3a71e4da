"""What the scanner page needs to check codes without the service (issue 12).

The page verifies the signed trust bundle against our public keys, which travel with the page
(never with the bundle they vouch for), and reads partner codes with their mapping files'
layouts, which travel with the page too: both come from this service over the signed-in
session, like the page itself. The service worker keeps the page and the assets named here.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from flask import current_app

from mapping.partner_schema import PartnerMapping

from . import recognition
from .record import TEST_RESULTS, TEST_TYPES
from .residents import get_ring

#: the trust bundle's path (DESIGN.md contract), which the scanner keeps for offline checks
BUNDLE_PATH = "/api/v1/trust/bundle"

#: the camera decoder's WebAssembly (zxing-cpp), fetched by vendor/zxing-reader.js
ZXING_WASM = "vendor/zxing_reader.wasm"

#: The scanner's scripts that its first load leaves out (issue 13.11: at most 100 KB before the
#: page is usable). The page inserts each when it is first needed: the offline verifier and its
#: CBOR library once the page has loaded, with the trust bundle they check codes against; the
#: camera decoders when the camera is on, zxing-cpp only where the browser's BarcodeDetector
#: cannot read QR codes, jsQR only where zxing cannot load or run.
LATER = {"cbor": "vendor/cbor-x.min.js", "offline": "js/offline-verify.js",
         "zxing": "vendor/zxing-reader.js", "jsqr": "vendor/jsQR.min.js"}

#: what the scanner needs to run offline; the service worker keeps a copy of each (installing,
#: once the page has loaded: the decoders too, so the camera reads offline)
WORKER_ASSETS = ("css/site.css", "js/prefs.js", "vendor/zxing-reader.js", ZXING_WASM,
                 "vendor/jsQR.min.js", "vendor/cbor-x.min.js", "js/offline-verify.js",
                 "js/checkpoint.js")

#: the facts of a partner code the scanner reads offline (mapping/partner_schema.py ClaimMap)
PARTNER_FACTS = ("subject", "name", "status", "issued_at", "valid_until", "not_before",
                 "document_type", "document_number", "document_region", "test_type",
                 "test_result", "test_sampled_at")


def page_data() -> dict:
    """The scanner page's data for offline checks: where the bundle is, whose keys sign it,
    our issuer id and clock skew, and the partner layouts."""
    config = current_app.config
    return {"bundle_url": BUNDLE_PATH, "trust_keys": get_ring().jwks(),
            "issuer": config["ISSUER"], "clock_skew": config["CLOCK_SKEW"],
            "partners": partner_layouts(recognition.get_registry())}


def partner_layouts(registry) -> list[dict]:
    """Each partner mapping file's layout (where subject, name, status, times, document and
    test sit), its prefix, issuers, algorithms and vocabularies: what the page's partner
    verifier reads a code with. Their keys come in the signed bundle."""
    out = []
    for adapter in registry.adapters():
        mapping = getattr(adapter, "mapping", None)
        if not isinstance(mapping, PartnerMapping):
            continue
        claims = mapping.claims
        out.append({
            "scheme": mapping.scheme, "name": mapping.name, "prefix": mapping.prefix,
            "issuers": list(mapping.issuers), "algorithms": list(mapping.algorithms),
            "skew": getattr(adapter, "skew", 60),
            "claims": {fact: getattr(claims, fact) for fact in PARTNER_FACTS},
            "formats": {fact: claims.time_format(fact)
                        for fact in ("issued_at", "valid_until", "not_before",
                                     "test_sampled_at")},
            "status": dict(mapping.status_decode),
            "documents": dict(mapping.documents_decode),
            "test_types": list(TEST_TYPES), "test_results": list(TEST_RESULTS)})
    return out


@functools.lru_cache(maxsize=4)
def worker_version(static_folder: str) -> str:
    """A digest of the kept assets: a new release gets a new cache, and the old one goes."""
    digest = hashlib.sha256()
    static = Path(static_folder)
    for name in WORKER_ASSETS:
        digest.update((static / name).read_bytes())
    return digest.hexdigest()[:12]
