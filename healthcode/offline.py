"""Verification without the service: what ``healthcode verify`` and offline scanners do.

Trust comes from files only: the trust paths given, the data dir's ``trust/`` folder, and our
own key ring's public keys (trusted under our issuer id for the native scheme).
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from . import recognition
from .config import data_path
from .errors import CodeError
from .keys import KeyRing
from .record import format_time
from .trust import TrustStore
from .verification import add_warnings


def build_trust(cfg, trust_paths=(), issuer: str | None = None) -> TrustStore:
    """What the service trusts (our ring, the data dir's trust folder), plus ``trust_paths``."""
    trust = recognition.build_trust(cfg, KeyRing(data_path(cfg, "keys")))
    for path in trust_paths:
        trust.load_path(Path(path), default_issuer=issuer)
    return trust


def verify_offline(code: str, cfg, trust_paths=(), at: datetime | None = None,
                   registry=None, issuer: str | None = None) -> dict:
    """Verify ``code`` against file trust; the answer carries stale-trust warnings too."""
    trust = build_trust(cfg, trust_paths, issuer)
    return add_warnings(_verify(code, trust, registry or recognition.build_registry(cfg), at),
                        trust.warnings())


def _verify(code: str, trust: TrustStore, registry, at: datetime | None) -> dict:
    adapter = registry.detect(code)
    if adapter is None:
        return {"valid": False, "reason": "unsupported_scheme", "scheme": None,
                "message": "no installed scheme recognises this code", "checked_online": False}
    try:
        decoded = adapter.decode(code, trust=trust, at=at)
    except CodeError as error:
        return {"valid": False, "reason": error.reason, "message": error.message,
                "scheme": adapter.scheme, "checked_online": False}
    record = decoded.record
    provenance = record.provenance
    return {"valid": True, "reason": None, "scheme": adapter.scheme, "status": record.status,
            "issuer": decoded.issuer, "kid": decoded.kid,
            "expires_at": format_time(provenance.valid_until)
            if provenance and provenance.valid_until else None,
            "checked_online": False, "record": record.to_dict(), "details": decoded.details}
