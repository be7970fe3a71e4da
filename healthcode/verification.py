"""Checking a scanned code: offline from the token, then online against the current status.

The answer is what a checkpoint needs and nothing more personal: colour, reason, masked name,
expiry, and whether the store was consulted. A store outage never fails a verification: the
answer then comes from the token alone, marked ``checked_online: false``.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import current_app

from . import recognition, tokens
from .errors import CodeError, PayloadTooLarge, StoreUnavailable
from .record import format_time
from .residents import ONE_SHOT_VERSION, get_ring
from .store import get_store


def check_length(text: str) -> None:
    limit = current_app.config["MAX_CODE_LENGTH"]
    if len(text) > limit:
        raise PayloadTooLarge(f"the code is longer than {limit} characters")


def failure(error: CodeError, scheme: str | None) -> dict:
    return {"valid": False, "reason": error.reason, "message": error.message, "scheme": scheme,
            "status": None, "subject": None, "expires_at": None, "checked_online": False}


def verify_native(text: str, at: datetime | None = None, online: bool = True) -> dict:
    config = current_app.config
    try:
        claims = tokens.verify(text, get_ring(), issuer=config["ISSUER"], at=at,
                               skew=config["CLOCK_SKEW"], max_length=config["MAX_CODE_LENGTH"])
    except CodeError as error:
        return failure(error, "native")
    answer = {"valid": True, "reason": None, "scheme": "native", "status": claims.status,
              "status_version": claims.status_version,
              "subject": {"masked_name": claims.masked_name},
              "issued_at": format_time(claims.issued_at),
              "expires_at": format_time(claims.expires_at), "checked_online": False}
    if not online:
        return answer
    try:
        current = get_store().current_status(claims.subject_id)
    except StoreUnavailable:
        current_app.logger.warning("verify answered offline: the store is unavailable")
        return answer
    answer["checked_online"] = True
    if claims.status_version == ONE_SHOT_VERSION:
        return answer
    if current is None:
        answer.update(valid=False, reason="revoked", status=None,
                      message="this resident is no longer enrolled")
        return answer
    status, version = current
    if version > claims.status_version:
        answer.update(valid=False, reason="superseded", status=status, status_version=version,
                      message="the status has changed since this code was issued: "
                              "the current status is shown")
    return answer


def verify_any(text: str, at: datetime | None = None) -> dict:
    """Any registered scheme, detected automatically; our own codes take the fast path."""
    if tokens.looks_native(text):
        answer = verify_native(text, at=at)
        # A JWT that is not ours (another issuer, a key we do not hold) may be a partner's.
        if answer["reason"] not in ("untrusted_issuer", "unknown_key"):
            return answer
    registry = recognition.get_registry()
    adapter = registry.detect(text)
    if adapter is None:
        return failure(CodeError("unsupported_scheme", "no installed scheme recognises this "
                                                       "code"), None)
    if adapter.scheme == "native":
        return verify_native(text, at=at)  # no partner claims it: our refusal stands
    try:
        decoded = adapter.decode(text, trust=recognition.get_trust(), at=at)
    except CodeError as error:
        return failure(error, adapter.scheme)
    return _foreign_answer(decoded, at)


def _foreign_answer(decoded, at: datetime | None) -> dict:
    """A verified foreign code: its colour, or the colour our agreement gives its evidence."""
    record = decoded.record
    provenance = record.provenance
    answer = {"valid": True, "reason": None, "scheme": decoded.scheme, "status": record.status,
              "subject": {"masked_name": record.subject.masked_name},
              "issued_at": format_time(provenance.issued_at)
              if provenance and provenance.issued_at else None,
              "expires_at": format_time(provenance.valid_until)
              if provenance and provenance.valid_until else None,
              "checked_online": False,
              # where a genuine code strays from the letter of its scheme (DESIGN.md: verify)
              "warnings": list(decoded.warnings)}
    if record.status is None:
        policy = recognition.get_policies().get(decoded.scheme)
        if policy is None:
            answer["message"] = "no agreement gives a colour to codes of this scheme"
            return answer
        try:
            status, _, _ = policy.apply(record, at or datetime.now(timezone.utc))
        except CodeError as error:
            answer.update(valid=False, reason=error.reason, message=error.message)
            return answer
        answer["status"] = status
    return answer
