"""Checking a scanned code: offline from the token, then online against the current status.

The answer is what a checkpoint needs and nothing more personal: colour, reason, masked name,
expiry, and whether the store was consulted. A store outage never fails a verification: the
answer then comes from the token alone, marked ``checked_online: false``.
"""
from __future__ import annotations

from datetime import datetime

from flask import current_app

from . import tokens
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
