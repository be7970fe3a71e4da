"""The signed trust bundle: everything an offline scanner needs, in one JWS (DESIGN.md contract).

``GET /api/v1/trust/bundle`` and ``healthcode trust bundle --out FILE`` give the same thing:
a compact JWS (``alg`` ES256, ``kid`` of our active key, ``typ`` ``hc-trust-bundle+jwt``)
whose payload is, in format version 1::

    {"iss": our issuer id, "iat", "nbf", "exp": NumericDate, "bundle_version": 1,
     "keys": {"keys": [our public JWKs]},                 # what /.well-known/jwks.json says
     "issuers": [{"iss", "scheme", "name"?, "canonical_iss"?, "keys": [JWK...]}],
     "shc_revocations": [{"iss", "kid", "ctr", "rids": ["<rid>" | "<rid>.<timestamp>"]}],
     "certificates": [{"kid", "country", "scheme", "not_after", "der"}],
     "revocations": {"hash_type": "SIGNATURE", "hashes": ["<base64>", ...]},
     "rules": [EU DCC business rules], "modes": {name: {"rules": [rule ids]}},
     "sources": [{"name", "format", "as_of"}], "warnings": [{"code", "message"}]}

- ``issuers``: the partner-region and SMART Health Card issuer keys we trust, by issuer,
  with the VCI directory's ``canonical_iss`` where it gives one (our own keys are in ``keys``).
- ``certificates``: the EU DCC document signers (DER, base64), only those not expired at
  ``iat``; ``kid`` is base64 of the first 8 bytes of the DER's SHA-256, ``country`` as the list
  filed it.
- ``revocations``: revoked one-shot codes by the EU DCC revocation design's SIGNATURE hash
  type (:func:`signature_hash`); empty when none are revoked.
- ``rules`` and ``modes``: present always, non-empty when the deployment configures acceptance
  rules and checkpoint modes (``app.extensions["healthcode.rules"]`` and
  ``["healthcode.modes"]``).

A scanner checks the signature against our published key, refuses a bundle outside
``nbf``..``exp``, and shows ``warnings`` (stale trust sources). ``iat`` is aligned to a quarter
of the lifetime, so every worker serving the same trust builds the same payload, and the
(weak) ``ETag`` is a hash of the payload: a scanner that polls with ``If-None-Match`` gets 304
until something changed, and a fresh bundle at least every quarter lifetime.
"""
from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import jwt

from ..errors import SignerUnavailable

BUNDLE_VERSION = 1
MEDIA_TYPE = "application/jose"
TYP = "hc-trust-bundle+jwt"
#: schemes whose certificates the bundle carries (those a scanner verifies offline)
CERTIFICATE_SCHEMES = (None, "eu-dcc")


def signature_hash(signature: bytes, *, ecdsa: bool = True) -> str:
    """The EU DCC revocation design's SIGNATURE hash of a code: base64 of the first 16 bytes
    of the SHA-256 of its signature.

    ``signature`` is the raw signature of the code (a JWS's third part, a COSE_Sign1's
    signature), for ECDSA ``r || s``. For ECDSA only ``r`` (the first half) is hashed, as the
    EU design does: (r, n - s) is an equally valid signature over the same code, so hashing
    ``s`` would let anyone re-sign a revoked code into a hash the list does not hold.
    """
    part = signature[: len(signature) // 2] if ecdsa else signature
    return base64.b64encode(hashlib.sha256(part).digest()[:16]).decode("ascii")


@dataclass(frozen=True)
class Bundle:
    token: str
    etag: str
    kid: str
    issued_at: datetime
    expires_at: datetime
    payload: dict

    @functools.cached_property
    def gzipped(self) -> bytes:
        """The JWS gzip-compressed once (a third of its size with real lists loaded)."""
        return gzip.compress(self.token.encode("ascii"), compresslevel=6, mtime=0)


def build_payload(trust, ring, config, *, now: datetime | None = None, revocations=(),
                  rules=(), modes=None) -> dict:
    """The bundle's payload (see the module docstring), deterministic for the same inputs."""
    now = now or datetime.now(timezone.utc)
    ttl = int(config["TRUST_BUNDLE_TTL"])
    period = max(60, ttl // 4)
    iat = int(now.timestamp()) // period * period
    issuer = config["ISSUER"]
    at = datetime.fromtimestamp(iat, timezone.utc)
    return {
        "iss": issuer, "iat": iat, "nbf": iat, "exp": iat + ttl,
        "bundle_version": BUNDLE_VERSION,
        "keys": ring.jwks(),
        "issuers": _issuers(trust, exclude=issuer),
        "shc_revocations": _shc_revocations(trust),
        "certificates": _certificates(trust, at),
        "revocations": {"hash_type": "SIGNATURE", "hashes": sorted(revocations)},
        "rules": list(rules),
        "modes": dict(modes or {}),
        "sources": [{"name": s.name, "format": s.format,
                     "as_of": s.to_dict(at)["as_of"]}
                    for s in sorted(trust.sources.values(), key=lambda s: s.name)],
        "warnings": trust.warnings(at),
    }


def build_bundle(trust, ring, config, **kwargs) -> Bundle:
    """Sign :func:`build_payload` with the key ring's active key."""
    if not ring.has_active():
        # 503, not 500: the service can still verify; it cannot sign a bundle until a key is
        raise SignerUnavailable("no active signing key for the trust bundle: run "
                                "`healthcode keys generate`")
    payload = build_payload(trust, ring, config, **kwargs)
    key = ring.active
    token = jwt.encode(payload, key.private_key, algorithm="ES256",
                       headers={"kid": key.kid, "typ": TYP})
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    etag = 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Bundle(token=token, etag=etag, kid=key.kid,
                  issued_at=datetime.fromtimestamp(payload["iat"], timezone.utc),
                  expires_at=datetime.fromtimestamp(payload["exp"], timezone.utc),
                  payload=payload)


def _issuers(trust, exclude: str) -> list[dict]:
    by_issuer: dict[str, list[dict]] = {}
    for key in trust.keys():
        by_issuer.setdefault(key.issuer, []).append(key.jwk)
    out = []
    for iss in trust.issuers():
        if iss == exclude or iss not in by_issuer:
            continue
        info = trust.issuer_info(iss)
        entry = {"iss": iss, "scheme": trust.issuer_scheme(iss)}
        if info is not None and info.name:
            entry["name"] = info.name
        if info is not None and info.canonical_iss:
            entry["canonical_iss"] = info.canonical_iss
        entry["keys"] = sorted(by_issuer[iss], key=lambda j: j["kid"])
        out.append(entry)
    return out


def _shc_revocations(trust) -> list[dict]:
    out = []
    for crl in trust.revocation_lists():
        rids = sorted(rid if cutoff is None else f"{rid}.{cutoff}"
                      for rid, cutoff in crl.rids.items())
        out.append({"iss": crl.issuer, "kid": crl.kid, "ctr": crl.ctr, "rids": rids})
    return out


def _certificates(trust, at: datetime) -> list[dict]:
    out = []
    for cert in trust.certificates():
        info = trust.certificate_info(cert)
        scheme = info.scheme if info else None
        if scheme not in CERTIFICATE_SCHEMES or cert.not_after < at:
            continue  # lean: only signers a scanner can still use
        out.append({"kid": base64.b64encode(cert.dcc_kid).decode(),
                    "country": (info.country if info else None) or cert.country,
                    "scheme": scheme or "eu-dcc",
                    "not_after": cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "der": base64.b64encode(cert.der).decode()})
    return sorted(out, key=lambda c: (c["kid"], c["der"]))


class BundleCache:
    """The bundle a worker serves, built again only when its inputs changed.

    Inputs: the trust store (its ``generation``: trust is loaded at start-up and on reload),
    our verifying keys, the revocation counter in Redis (one GET per request), the rules and
    modes, and the quarter-lifetime window ``iat`` is aligned to.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._bundle: Bundle | None = None

    def get(self, trust, ring, config, *, revocations_version, revocations, rules=(),
            modes=None, now: datetime | None = None) -> Bundle:
        """The current bundle; ``revocations`` is called only when a rebuild is due."""
        now = now or datetime.now(timezone.utc)
        period = max(60, int(config["TRUST_BUNDLE_TTL"]) // 4)
        key = (id(trust), trust.generation, tuple(k["kid"] for k in ring.jwks()["keys"]),
               ring.active.kid if ring.has_active() else None, revocations_version,
               id(rules), id(modes), int(now.timestamp()) // period)
        with self._lock:
            if key != self._key or self._bundle is None:
                self._bundle = build_bundle(trust, ring, config, now=now,
                                            revocations=revocations(), rules=rules,
                                            modes=modes)
                self._key = key
            return self._bundle

    @property
    def last(self) -> Bundle | None:
        """The bundle built last (served while Redis is unreachable)."""
        return self._bundle
