"""Converting a code from one scheme into another: decode, verify, apply the agreement, re-issue.

The steps, each reported in the ``trace``:

1. detect the source scheme (or take the one named) and decode + verify it with the trust store;
2. for our own codes, check the status online (a superseded code does not convert) and take the
   subject's full record from the store, since a native code carries only a masked name;
3. apply the policy of the scheme on the other side of the agreement (colours accepted,
   evidence required, colour granted to colourless codes, validity bound);
4. into our scheme: the traveller becomes a subject here, keyed by their identity document when
   the source carries one (else by the source scheme and its subject id), so converting the same
   code twice finds the same subject instead of creating another; a status this authority has
   already set for that subject wins over the partner's;
5. issue in the target scheme, valid no longer than the source and the policy allow.

Every conversion is recorded in the audit stream by ids and hashes, never personal data.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app

from mapping import CodeError, Decoded, MappingAdapter

from . import recognition, tokens
from .errors import ConfigurationError, Conflict, InvalidField, NotFound, SignerUnavailable
from .policy import earliest
from .record import Document, Provenance, Record, format_time
from .residents import ONE_SHOT_VERSION, get_ring, get_secret
from .rules.service import get_valuesets
from .signers import signer_for
from .store import get_store
from .subject import mask_document_number, subject_id


@dataclass
class Conversion:
    code: str
    scheme: str
    record: Record
    trace: list[str]
    expires_at: datetime | None
    source_scheme: str
    #: the source code's deviations from the letter of its scheme (``Decoded.warnings``)
    warnings: tuple = ()

    def to_dict(self) -> dict:
        return {"code": self.code, "scheme": self.scheme, "source_scheme": self.source_scheme,
                "record": self.record.masked(), "trace": self.trace,
                "expires_at": format_time(self.expires_at) if self.expires_at else None,
                "warnings": list(self.warnings)}


def convert(text: str, to: str, *, source: str | None, actor: str,
            document: dict | None = None, at: datetime | None = None) -> Conversion:
    registry = recognition.get_registry()
    at = at or datetime.now(timezone.utc)
    trace: list[str] = []
    adapter = _source_adapter(text, source, registry)
    if to not in registry:
        raise CodeError("unsupported_scheme", f"no scheme {to!r}; see GET /api/v1/schemes")
    target = registry.get(to)
    if not target.can_encode:
        raise CodeError("unsupported_scheme", f"codes cannot be issued in the {to} scheme")
    if to == adapter.scheme:
        raise InvalidField("to", "the code is already in that scheme")

    decoded = adapter.decode(text, trust=recognition.get_trust(), at=at)
    trace.append(f"decode: {adapter.scheme} verified" +
                 (f" (issuer {decoded.issuer}, key {decoded.kid})" if decoded.issuer else ""))
    record = decoded.record
    if adapter.scheme == "native":
        record = _native_source(decoded, document, trace)

    policy_scheme = adapter.scheme if to == "native" else to
    policy = recognition.get_policies().get(policy_scheme)
    if policy is None:
        raise CodeError("policy_refused", f"there is no conversion agreement for "
                                          f"{policy_scheme}", rule="agreement")
    status, until, fired = policy.apply(record, at, valuesets=get_valuesets())
    trace += fired

    source_until = record.provenance.valid_until if record.provenance else None
    until = earliest(until, source_until)
    if until is not None and until <= at:
        raise CodeError("expired", "nothing is left of the source's validity to convert")
    record = record.replace(status=status)

    if to == "native":
        record, version, until = _native_target(record, decoded, until, trace, actor)
    else:
        version = None
    provenance = Provenance(scheme=to, issuer=None, issued_at=at, valid_until=until,
                            source_id=record.provenance.source_id if record.provenance else None,
                            status_version=version)
    record = record.replace(provenance=provenance)
    signer = signer_for(to, target, recognition.get_signers(), get_ring(),
                        current_app.config["ISSUER"])
    try:
        code = target.encode(record, signer=signer, at=at)
    except ConfigurationError as exc:
        # e.g. an expired document signer: the operator's to fix, and the client's to retry
        current_app.logger.error("cannot issue %s codes: %s", to, exc.message)
        raise SignerUnavailable(f"{to} codes cannot be issued now: {exc.message}") from exc
    trace.append(f"encode: {to} signed by {signer.issuer}" +
                 (f" (key {signer.kid})" if signer.kid else ""))
    _audit(actor, adapter.scheme, to, text, record, status)
    return Conversion(code=code, scheme=to, record=record, trace=trace, expires_at=until,
                      source_scheme=adapter.scheme, warnings=decoded.warnings)


def _source_adapter(text: str, source: str | None, registry) -> MappingAdapter:
    if source:
        if source not in registry:
            raise CodeError("unsupported_scheme", f"no scheme {source!r}")
        adapter = registry.get(source)
        if not adapter.detect(text):
            raise CodeError("malformed", f"this is not a {source} code")
        return adapter
    adapter = registry.detect(text)
    if adapter is None:
        raise CodeError("unsupported_scheme", "no installed scheme recognises this code")
    return adapter


def _native_source(decoded: Decoded, document: dict | None, trace: list[str]) -> Record:
    """Our code: check it online and read the subject's full record from the store."""
    sid = decoded.record.subject.subject_id
    version = decoded.record.provenance.status_version
    store = get_store()
    if version == ONE_SHOT_VERSION:
        raise CodeError("policy_refused", "one-shot codes carry no enrolled record to convert",
                        rule="enrolled")
    try:
        data, status, current = store.resident(sid)
    except NotFound:
        raise CodeError("revoked", "this resident is no longer enrolled") from None
    if current > version:
        raise CodeError("superseded", "the status has changed since this code was issued")
    trace.append(f"online: status {status} version {current} confirmed")
    stored = Record.from_dict(data["record"])
    subject = stored.subject
    if document is not None:
        given = Document.from_request(document)
        if not hmac.compare_digest(subject_id(get_secret(), given), sid):
            raise CodeError("policy_refused", "the document does not belong to this code",
                            rule="document")
        subject = dataclasses.replace(subject, document=given)
        trace.append("document: presented and matches the code's subject")
    else:
        # Only a masked number is stored; a partner gets no document number it could misuse.
        subject = dataclasses.replace(subject, document=None)
    return stored.replace(subject=subject, status=status, provenance=Provenance(
        scheme="native", issuer=decoded.issuer, source_id=sid,
        issued_at=decoded.record.provenance.issued_at,
        valid_until=decoded.record.provenance.valid_until, status_version=current))


def _native_target(record: Record, decoded: Decoded, until, trace, actor):
    """Make (or find) the traveller's subject here; a local status wins over the partner's."""
    config = current_app.config
    store = get_store()
    document = record.subject.document
    if document is not None:
        sid = subject_id(get_secret(), document)
        trace.append("subject: keyed by the identity document")
    else:
        seed = f"{decoded.scheme}|{decoded.issuer}|{record.provenance.source_id}"
        sid = subject_id(get_secret(), Document(type="foreign-code", number=seed,
                                                region=decoded.scheme.upper()))
        trace.append("subject: keyed by the source scheme and its subject id")
    stored_subject = dataclasses.replace(
        record.subject, subject_id=sid,
        document=dataclasses.replace(document, number=mask_document_number(document.number))
        if document else None)
    stored = record.replace(subject=stored_subject, reasons=("partner_conversion",))
    current = store.current_status(sid)
    if current is None:
        data = {"record": stored.replace(provenance=record.provenance).to_dict()}
        try:
            store.create_resident(sid, data, record.status, ("partner_conversion",), actor)
            current = (record.status, 1)
            trace.append(f"subject: enrolled from {decoded.scheme} as {record.status}")
        except Conflict:  # a concurrent conversion enrolled them first
            current = store.current_status(sid)
    else:
        trace.append(f"subject: already known here; local status {current[0]} applies")
    status, version = current
    now = datetime.now(timezone.utc)
    if until is None:  # neither the source nor the policy bounds it: a dynamic code's life
        until = now + timedelta(seconds=config["CODE_TTL"])
    cap = now + timedelta(seconds=tokens.MAX_CONVERTED_TTL)
    if until > cap:  # verifiers refuse a longer-lived native code (tokens.max_lifetime)
        until = cap
        trace.append(f"native: validity capped at {tokens.MAX_CONVERTED_TTL // 86400} days")
    return stored.replace(status=status), version, until


def source_hash(text: str) -> str:
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:32]


def _audit(actor, source, target, text, record, status) -> None:
    # Every conversion reads or writes the store already, so an outage has failed it before
    # this point: an unaudited conversion cannot be handed out.
    get_store().audit("convert", actor=actor, source_scheme=source, target_scheme=target,
                      source_hash=source_hash(text), subject=record.subject.subject_id,
                      status=status)
