"""Checking a scanned code: offline from the token, then online against the current status.

The answer is what a checkpoint needs and nothing more personal: colour, reason, masked name,
expiry, and whether the store was consulted. A store outage never fails a verification: the
answer then comes from the token alone, marked ``checked_online: false``.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import current_app

from . import recognition, revocation, tokens
from .errors import CodeError, InvalidField, NotFound, PayloadTooLarge, StoreUnavailable
from .record import Provenance, Record, Subject, format_time
from .residents import ONE_SHOT_VERSION, get_ring
from .rules.service import apply_mode, get_valuesets
from .store import get_store


def check_length(text: str) -> None:
    limit = current_app.config["MAX_CODE_LENGTH"]
    if len(text) > limit:
        raise PayloadTooLarge(f"the code is longer than {limit} characters")


def failure(error: CodeError, scheme: str | None) -> dict:
    return {"valid": False, "reason": error.reason, "message": error.message, "scheme": scheme,
            "status": None, "subject": None, "expires_at": None, "checked_online": False}


def verify_native(text: str, at: datetime | None = None, online: bool = True, *,
                  mode=None, lang: str | None = None) -> dict:
    answer, claims = _verify_native(text, at, online)
    if mode is not None and answer["valid"]:
        return apply_mode(answer, mode, _native_record(claims, answer), at=at, lang=lang)
    return answer


def _verify_native(text: str, at: datetime | None, online: bool):
    """The answer, and the verified claims (None when the token itself failed)."""
    config = current_app.config
    try:
        claims = tokens.verify(text, get_ring(), issuer=config["ISSUER"], at=at,
                               skew=config["CLOCK_SKEW"], max_length=config["MAX_CODE_LENGTH"],
                               dynamic_lifetime=recognition.get_native_lifetime())
    except CodeError as error:
        return failure(error, "native"), None
    answer = {"valid": True, "reason": None, "scheme": "native", "status": claims.status,
              "status_version": claims.status_version,
              "subject": {"masked_name": claims.masked_name},
              "issued_at": format_time(claims.issued_at),
              "expires_at": format_time(claims.expires_at), "checked_online": False}
    if not online:
        return answer, claims
    one_shot = claims.status_version == ONE_SHOT_VERSION
    try:
        # A one-shot code is tied to no enrolled status: the online question is whether it
        # was revoked. A dynamic code's is whether the status moved on. One GET either way.
        if one_shot:
            withdrawn = revocation.is_revoked(text)
        else:
            current = get_store().current_status(claims.subject_id)
    except StoreUnavailable:
        current_app.logger.warning("verify answered offline: the store is unavailable")
        return answer, claims
    answer["checked_online"] = True
    if one_shot:
        if withdrawn:
            answer.update(valid=False, reason="revoked", status=None,
                          message="the issuing authority revoked this code")
        return answer, claims
    if current is None:
        answer.update(valid=False, reason="revoked", status=None,
                      message="this resident is no longer enrolled")
        return answer, claims
    status, version = current
    if version > claims.status_version:
        answer.update(valid=False, reason="superseded", status=status, status_version=version,
                      message="the status has changed since this code was issued: "
                              "the current status is shown")
    if status != "green":
        _add_status_reasons(answer, claims.subject_id)
    return answer, claims


def _add_status_reasons(answer: dict, sid: str) -> None:
    """Why a code is yellow or red (the reason codes on record), so the checkpoint can say it.

    Only for yellow and red: a green verify stays one GET. Codes only, never the record."""
    try:
        data, _status, _version = get_store().resident(sid)
    except (StoreUnavailable, NotFound):
        return
    answer["reasons"] = list(data["record"].get("reasons") or ())


def _native_record(claims, answer: dict) -> Record:
    """What a checkpoint mode judges of our code: the resident's stored record (their
    evidence) when the online check ran, else the token's facts (a token carries no evidence).
    Only built under a mode: a plain verify reads nothing more than the status."""
    token_facts = Record(
        subject=Subject(masked_name=claims.masked_name, subject_id=claims.subject_id),
        status=claims.status, provenance=Provenance(
            scheme="native", issuer=current_app.config["ISSUER"],
            issued_at=claims.issued_at, valid_until=claims.expires_at))
    if not answer["checked_online"] or claims.status_version == ONE_SHOT_VERSION:
        return token_facts
    try:
        data, _status, _version = get_store().resident(claims.subject_id)
        stored = Record.from_dict(data["record"])
    except (StoreUnavailable, NotFound, InvalidField, KeyError, TypeError):
        return token_facts
    return stored.replace(status=claims.status, provenance=token_facts.provenance)


def verify_any(text: str, at: datetime | None = None, *, mode=None,
               lang: str | None = None) -> dict:
    """Any registered scheme, detected automatically; our own codes take the fast path.

    With a checkpoint ``mode`` (:mod:`healthcode.rules.modes`) a genuine code's record is also
    judged by the mode's rules, and the answer carries them. Every answer, valid or not,
    carries the trust store's warnings (stale trust sources): a verdict reached with old trust
    data says so.
    """
    return add_warnings(_verify_any(text, at, mode=mode, lang=lang),
                        recognition.get_trust().warnings())


def add_warnings(answer: dict, warnings: list[dict]) -> dict:
    """Append ``warnings`` (``[{"code", "message"}]``) to an answer's ``warnings`` list."""
    answer.setdefault("warnings", [])
    answer["warnings"].extend(w for w in warnings if w not in answer["warnings"])
    return answer


def _verify_any(text: str, at: datetime | None = None, *, mode=None,
                lang: str | None = None) -> dict:
    if tokens.looks_native(text):
        answer = verify_native(text, at=at, mode=mode, lang=lang)
        # A JWT that is not ours (another issuer, a key we do not hold) may be a partner's.
        if answer["reason"] not in ("untrusted_issuer", "unknown_key"):
            return answer
    registry = recognition.get_registry()
    adapter = registry.detect(text)
    if adapter is None:
        return failure(CodeError("unsupported_scheme", "no installed scheme recognises this "
                                                       "code"), None)
    if adapter.scheme == "native":
        return verify_native(text, at=at, mode=mode, lang=lang)  # ours: our refusal stands
    try:
        decoded = adapter.decode(text, trust=recognition.get_trust(), at=at)
    except CodeError as error:
        return failure(error, adapter.scheme)
    if mode is not None:
        answer = _foreign_answer(decoded, at, grant=False)
        return apply_mode(answer, mode, decoded.record, at=at, lang=lang,
                          issuer_country=_issuer_country(decoded))
    return _foreign_answer(decoded, at)


def _issuer_country(decoded) -> str | None:
    """The country that issued an EU DCC (its CWT issuer): whose Invalidation rules apply."""
    issuer = decoded.issuer
    if decoded.scheme == "eu-dcc" and isinstance(issuer, str) and len(issuer) == 2 \
            and issuer.isalpha() and issuer.isupper():
        return issuer
    return None


def _foreign_answer(decoded, at: datetime | None, grant: bool = True) -> dict:
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
              "warnings": list(decoded.warnings),
              # who signed it: a scanner names the issuer of a genuine code that no colour
              # rule covers (issue 13.9); an issuer id, never personal data
              "issuer": decoded.issuer}
    if record.status is None and grant:  # under a mode, the mode's rules grant the colour
        policy = recognition.get_policies().get(decoded.scheme)
        if policy is None:
            answer["message"] = "no agreement gives a colour to codes of this scheme"
            return answer
        try:
            status, _, _ = policy.apply(record, at or datetime.now(timezone.utc),
                                        valuesets=get_valuesets())
        except CodeError as error:
            answer.update(valid=False, reason=error.reason, message=error.message)
            return answer
        answer["status"] = status
    return answer
