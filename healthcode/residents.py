"""Residents: enrollment, status changes and the dynamic code, between HTTP and the store.

A resident's code is dynamic: a fresh short-lived token is signed on demand and reused for the
first half of its life (so its rendered images are served from cache), and a status change
drops it, so the next fetch carries the new status.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from flask import current_app

import secrets

from . import qr, tokens
from .errors import CodeError, InvalidField, StoreUnavailable
from .keys import KeyRing
from .record import (STATUS_REASONS, STATUSES, Document, Evidence, Record, Subject,
                     format_time, validate_reasons)
from .store import NotReplicated, get_store
from .subject import mask_document_number, subject_id


def get_ring() -> KeyRing:
    return current_app.extensions["healthcode.keys"]


def get_secret() -> bytes:
    return current_app.extensions["healthcode.subject_secret"]


def parse_status(data: dict) -> tuple[str, tuple[str, ...]]:
    """Status and reasons from a request; yellow and red need a reason from the list."""
    status = data.get("status")
    if status not in STATUSES:
        raise InvalidField("status", f"one of {', '.join(STATUSES)}")
    reasons = data.get("reasons")
    if reasons is None:
        reasons = []
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise InvalidField("reasons", "expected a list of reason codes")
    reason = data.get("reason")
    if reason is not None:
        if not isinstance(reason, str):
            raise InvalidField("reason", "expected a reason code")
        reasons = [reason] + reasons
    reasons = validate_reasons(reasons)
    if status in ("yellow", "red") and not reasons:
        raise InvalidField("reason", f"a {status} status needs a reason: one of "
                                     f"{', '.join(STATUS_REASONS)}")
    return status, reasons


def subject_from(data: dict, require_document: bool = True) -> Subject:
    document = data.get("document")
    if document is None and require_document:
        raise InvalidField("document", "required")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidField("name", "required")
    return Subject(
        name=name, family_name=data.get("family_name"), given_name=data.get("given_name"),
        name_latin=data.get("name_latin"), birth_date=data.get("birth_date"),
        document=Document.from_request(document) if document is not None else None)


def _evidence(data: dict) -> Evidence:
    raw = data.get("evidence") or {}
    if not isinstance(raw, dict):
        raise InvalidField("evidence", "expected an object")
    if not _EVIDENCE_FIELDS.issuperset(raw):
        raise InvalidField(f"evidence.{sorted(set(raw) - _EVIDENCE_FIELDS)[0]}", "unknown field")
    return Evidence(**raw)


_EVIDENCE_FIELDS = frozenset(("tests", "vaccinations", "recoveries"))


KNOWN_RESIDENT_FIELDS = frozenset({"name", "family_name", "given_name", "name_latin",
                                   "birth_date", "document", "status", "reason", "reasons",
                                   "evidence"})


@dataclass(frozen=True)
class Enrollment:
    """A validated enrollment request: who (by subject id), at which status, and the record
    to store (the document number masked)."""

    sid: str
    status: str
    reasons: tuple[str, ...]
    record: dict


def prepare_enrollment(data: dict, secret: bytes) -> Enrollment:
    """Validate an enrollment body (the one parser for the API, batches and imports)."""
    if data.__class__ is not dict:
        raise InvalidField("resident", "expected an object")
    if not KNOWN_RESIDENT_FIELDS.issuperset(data):
        raise InvalidField(sorted(set(data) - KNOWN_RESIDENT_FIELDS)[0], "unknown field")
    subject = subject_from(data)
    status, reasons = parse_status(data)
    evidence = _evidence(data)
    sid = subject_id(secret, subject.document)
    record = Record(subject=subject, status=status, reasons=reasons, evidence=evidence).to_dict()
    # The document number is replaced by a masked form: the subject id (a keyed hash of it)
    # does every job the clear number would, and a leak of the store then leaks no numbers.
    stored = record["subject"]
    stored["document"]["number"] = mask_document_number(subject.document.number)
    stored["subject_id"] = sid
    return Enrollment(sid, status, reasons, record)


def enroll(data: dict, actor: str) -> dict:
    enrollment = prepare_enrollment(data, get_secret())
    sid, status, reasons = enrollment.sid, enrollment.status, enrollment.reasons
    view = resident_view(sid, enrollment.record, status, 1)
    try:
        get_store().create_resident(sid, {"record": view["record"]}, status, reasons, actor)
    except NotReplicated as exc:
        raise exc.answered(view)
    return view


def resident_view(sid: str, record: dict, status: str, version: int) -> dict:
    return {"id": sid, "status": status, "status_version": version,
            "masked_name": record.get("subject", {}).get("masked_name"),
            "reasons": record.get("reasons", []), "record": record}


def show(sid: str) -> dict:
    data, status, version = get_store().resident(sid)
    view = resident_view(sid, data["record"], status, version)
    view.update(created_at=data.get("created_at"), updated_at=data.get("updated_at"))
    return view


def change_status(sid: str, data: dict, actor: str) -> dict:
    """A status change; with ``status_version``, only if the status is still at that version."""
    unknown = set(data) - {"status", "reason", "reasons", "note", "status_version"}
    if unknown:
        raise InvalidField(sorted(unknown)[0], "unknown field")
    status, reasons = parse_status(data)
    note = data.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 500):
        raise InvalidField("note", "a string of at most 500 characters")
    expected = data.get("status_version")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)
                                 or not 1 <= expected < 2**53):
        raise InvalidField("status_version", "the status version you expect, an integer >= 1")
    try:
        change = get_store().change_status(sid, status, reasons, actor, note=note,
                                           expected_version=expected)
    except NotReplicated as exc:
        raise exc.answered(_change_view(sid, exc.answer))
    try:
        get_store().publish_status(sid, change.status, change.version)
    except StoreUnavailable:
        pass  # the change is stored; open pages see it at their next renewal instead
    return _change_view(sid, change)


def _change_view(sid: str, change) -> dict:
    return {"id": sid, "status": change.status, "status_version": change.version,
            "previous_status": change.previous, "reasons": list(change.reasons)}


@dataclass(frozen=True)
class IssuedCode:
    token: str
    claims: tokens.NativeClaims

    def to_dict(self) -> dict:
        c = self.claims
        return {"code": self.token, "scheme": "native", "status": c.status,
                "status_version": c.status_version, "masked_name": c.masked_name,
                "issued_at": format_time(c.issued_at), "expires_at": format_time(c.expires_at),
                "kid": c.kid, "qr_version": qr.version(self.token)}


def _sign(sid: str, status: str, version: int, masked_name: str | None, ttl: int) -> IssuedCode:
    token, claims = tokens.issue(get_ring(), issuer=current_app.config["ISSUER"], subject_id=sid,
                                 status=status, status_version=version, masked_name=masked_name,
                                 issued_at=datetime.now(timezone.utc), ttl=ttl)
    return IssuedCode(token, claims)


def current_code(sid: str) -> IssuedCode:
    """The resident's code: the cached one while it is young, else a newly signed one."""
    store = get_store()
    config = current_app.config
    ttl = config["CODE_TTL"]
    cached = store.cached_code(sid)
    if cached:
        try:
            claims = tokens.verify(cached, get_ring(), issuer=config["ISSUER"], skew=0,
                                   dynamic_lifetime=ttl)
            return IssuedCode(cached, claims)
        except CodeError:  # a key was retired or the ring changed: sign anew
            pass
    data, status, version = store.resident(sid)
    masked = data["record"].get("subject", {}).get("masked_name")
    issued = _sign(sid, status, version, masked, ttl)
    store.cache_code(sid, issued.token, ttl // 2)
    return issued


#: the resident page's image: a PNG of one pixel per module, scaled up by the browser
PAGE_IMAGE = "page"


def image(token: str, fmt: str, seconds: int) -> bytes:
    """The QR image of a token, from the cache when another request already drew it."""
    store = get_store()
    try:
        cached = store.cached_image(token, fmt)
    except StoreUnavailable:
        cached = None
    if cached is not None:
        return cached
    rendered = qr.render_compact(token) if fmt == PAGE_IMAGE else qr.render(token, fmt)
    try:
        store.cache_image(token, fmt, rendered, seconds)
    except StoreUnavailable:
        pass  # a cold cache is slower, not wrong
    return rendered


#: One-shot codes carry status version 0: they are tied to no enrolled status, so an online
#: check has nothing to supersede them with. They live at most MAX_ONE_SHOT_TTL (30 days), the
#: bound a verifier holds them to (:func:`healthcode.tokens.max_lifetime`).
ONE_SHOT_VERSION = tokens.ONE_SHOT_VERSION
MAX_ONE_SHOT_TTL = tokens.MAX_ONE_SHOT_TTL


def one_shot(data: dict) -> IssuedCode:
    unknown = set(data) - KNOWN_RESIDENT_FIELDS - {"ttl", "format"}
    if unknown:
        raise InvalidField(sorted(unknown)[0], "unknown field")
    subject = subject_from(data, require_document=False)
    status, _ = parse_status(data)
    _evidence(data)  # validated, so a batch issuer learns about bad evidence now
    ttl = data.get("ttl", current_app.config["CODE_TTL"])
    if isinstance(ttl, float) and ttl.is_integer():  # 600.0 is 600 (JSON Schema's integer)
        ttl = int(ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 10 <= ttl <= MAX_ONE_SHOT_TTL:
        raise InvalidField("ttl", f"seconds between 10 and {MAX_ONE_SHOT_TTL}")
    if subject.document is not None:
        sid = subject_id(get_secret(), subject.document)
    else:
        sid = secrets.token_urlsafe(12)  # random, the same length as a subject id
    return _sign(sid, status, ONE_SHOT_VERSION, subject.masked_name, ttl)
