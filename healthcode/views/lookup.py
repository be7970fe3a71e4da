"""``POST /api/v1/lookup``: a resident's colour by identity document, for people without a phone.

A lookup service once leaked photos and test results given only a name and an ID number, so
this one answers colour and masked name and nothing else, only to checkpoint credentials, a
limited number of times per credential per minute (``LOOKUP_RATE``), and writes every lookup to
the audit stream. The document number is never stored or logged: it becomes the subject id
(a keyed hash) at once.
"""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify

from ..auth import actor, current_credential, require
from ..errors import InvalidField, NotFound, RateLimited
from ..http import json_body
from ..record import Document
from ..residents import get_secret
from ..store import get_store
from ..subject import subject_id

bp = Blueprint("lookup", __name__, url_prefix="/api/v1")

WINDOW = 60  # seconds: LOOKUP_RATE is per minute


@bp.post("/lookup")
@require("checkpoint")
def lookup():
    # Counted before the body is read: a malformed request is still an attempt.
    _limit(current_credential().id)
    document = _document(json_body())
    sid = subject_id(get_secret(), document)
    store = get_store()
    try:
        data, status, _version = store.resident(sid)
    except NotFound:
        found, status, masked = False, None, None
    else:
        found, masked = True, data["record"].get("subject", {}).get("masked_name")
    store.audit("lookup", actor=actor(), subject=sid if found else None, found=found,
                document_type=document.type, region=document.region)
    answer = {"found": found, "status": status, "masked_name": masked}
    if found and status != "green":  # why, as reason codes: the scanner says it in words
        answer["reasons"] = list(data["record"].get("reasons") or ())
    return jsonify(answer)


def _limit(cred_id: str) -> None:
    rate = int(current_app.config["LOOKUP_RATE"])
    count = get_store().hit(f"lookup:{cred_id}", window=WINDOW)
    if count <= rate:
        return
    if count == rate + 1:
        # Audited once per window, not per refused request, so a runaway client cannot flood
        # the audit stream; the refusal itself is what an investigator needs to see.
        get_store().audit("lookup_rate_limited", actor=actor(), limit=rate)
    retry_after = WINDOW - int(time.time()) % WINDOW
    raise RateLimited(f"at most {rate} lookups a minute; try again in {retry_after} s",
                      retry_after=retry_after)


def _document(data: dict) -> Document:
    unknown = set(data) - {"document"}
    if unknown:
        raise InvalidField(sorted(unknown)[0], "unknown field")
    return Document.from_request(data.get("document"))


@bp.errorhandler(RateLimited)
def rate_limited(error: RateLimited):
    response = jsonify(error.to_dict())
    response.status_code = error.status
    response.headers["Retry-After"] = str(error.detail.get("retry_after", WINDOW))
    return response
