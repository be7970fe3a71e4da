"""The partner JWT family: one adapter class, one TOML mapping file per partner, no code each.

Many regions' health codes are a signed JWT with the partner's own claim names, colour values and
document vocabulary. Each agreement with such a partner is written down as a mapping file
(schema and checks: :mod:`mapping.partner_schema`; a guide and three commented examples:
``mapping/partners/``). The service loads every ``*.toml`` file of ``<data dir>/mappings`` at
start-up with :func:`load_partners` and registers one :class:`PartnerJWTAdapter` per file under
the file's ``scheme`` name. Adding a partner is adding a file and the partner's JWK set to the
trust directory.

Mapping file (top-level keys; unknown keys are errors, except inside ``[policy]``):

==================  ==========================================================================
``scheme``          scheme name the adapter registers under (``[a-z0-9-]{2,32}``)
``name``            display name ("Macau Health Code")
``region``          region code ("MO", "CN-GD")
``issuers``         the ``iss`` values accepted; each must also be trusted for this scheme
``algorithms``      allow-list, subset of ES256, ES384, ES512, PS256, EdDSA (never none or HS*)
``prefix``          optional text before the JWT in the QR ("HKHC:")
``[claims]``        claim paths (dotted for nested objects) per canonical fact; time formats in
                    ``[claims.formats]`` (``numeric`` POSIX seconds, the default, or ``iso``)
``[status]``        ``decode``: partner value -> green | yellow | red | refuse; ``encode``: ours
                    -> theirs (absent: we cannot issue in this format)
``[documents]``     ``decode`` / ``encode`` document-type vocabularies (with document claims)
``[encode]``        ``issuer``, ``algorithm`` (ES256), ``ttl`` (3600 s), ``typ`` for issuing
``[policy]``        kept raw as :attr:`PartnerJWTAdapter.policy_table`; the conversion engine
                    reads it
==================  ==========================================================================

Decoding order, and why:

1. Size cap (one QR code), then the prefix, then the shape: three base64url parts, the header
   and claims JSON objects.
2. ``alg`` must be on the partner's allow-list before any key is chosen (else ``bad_signature``:
   nothing signed that way can be accepted); a ``kid`` must be named (else ``unknown_key``).
3. The unverified ``iss`` is only used to choose keys: it must be one of the file's ``issuers``
   *and* trusted for this scheme in the trust store (else ``untrusted_issuer``). Keys come from
   the trust store only, never from a URL in the code. The key is looked up by ``(iss, kid)``
   (else ``unknown_key``), so a key of issuer A never verifies a code naming issuer B.
4. The signature (``bad_signature``); from here on only verified claims are read.
5. The validity window, with :attr:`PartnerJWTAdapter.skew` seconds of clock skew either way:
   ``not_before`` or ``issued_at`` ahead -> ``not_yet_valid``; ``valid_until`` passed ->
   ``expired``.
6. Every mapped claim is read and type-checked (missing required claim or wrong type ->
   ``malformed``) before any vocabulary is applied, so a broken code is reported as broken.
7. Vocabularies: a status value not in ``[status.decode]``, or mapped to ``refuse``, a document
   type not in ``[documents.decode]``, a test type or result outside ours -> ``policy_refused``.
   Nothing is defaulted: colours are not one-to-one between regions, so a mapping refuses what
   it was not told.

The record: subject (name, Latin name, birth date, document), status, no reasons, evidence, and
provenance (scheme, issuer, ``source_id`` = the code id claim or else the partner's subject,
issued-at, valid-until, key id). The partner's subject id is not put in ``subject.subject_id``,
which is *our* keyed hash of the document: the service computes that itself. A test becomes one
:class:`~healthcode.record.TestResult` (types and results in our vocabulary: pcr, rat, antibody,
other; negative, positive, inconclusive). Vaccination claims are a summary (dose count and
whether the series is complete) and become one :class:`~healthcode.record.Vaccination` with
product ``"unspecified"``, ``dose_number`` = the count, ``series_doses`` = the count when complete,
and ``administered_on`` = the *year* the code was issued: the code carries no dose date, and a
partial date is one nobody can count days from, so a policy bounded in days since a dose fails
closed on it instead of taking the issue day for the dose day.

Encoding lays the record out the same way: status and document type through the ``encode``
tables (a value missing there is ``policy_refused``, as is a record without a name or status),
``iat`` (and ``not_before`` where mapped) = ``at``, expiry = the earlier of the record's
``valid_until`` and ``at + encode.ttl``, ``iss`` = ``encode.issuer`` or the signer's issuer, the
signer's ``kid`` in the header, the latest test only, and the prefix. The subject claim carries
our subject id, never a document number; a record without one (converted from a scheme that has
none) gets a random one-off id, as does the code id claim. Times are whole seconds.
"""
from __future__ import annotations

import copy
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from os import PathLike
from pathlib import Path
from typing import Any

import jwt
from jwt.exceptions import (InvalidAlgorithmError, InvalidKeyError, InvalidSignatureError,
                            PyJWTError)
from jwt.utils import base64url_decode

from healthcode.errors import HealthCodeError
from healthcode.record import (TEST_RESULTS, TEST_TYPES, Document, Evidence, Provenance, Record,
                               Subject, TestResult, Vaccination, format_time, parse_partial_date)

from .base import CodeError, Decoded, MappingAdapter, Signer, check_size, utcnow
from .partner_schema import REFUSE, ClaimMap, MappingFileError, PartnerMapping, load_mapping

__all__ = ["PartnerJWTAdapter", "PartnerMapping", "MappingFileError", "load_mapping",
           "load_partners", "EXAMPLES", "MAX_PARTNER_CODE", "UNSPECIFIED_PRODUCT"]

#: The example mapping files shipped with the package (templates: the service loads the files
#: in ``<data dir>/mappings``, not these).
EXAMPLES = Path(__file__).with_name("partners")
#: A partner code is one QR code: at most 2,953 characters in byte mode. The cap leaves room
#: for a prefix and keeps hostile input small before any parsing.
MAX_PARTNER_CODE = 4096
#: Product of a vaccination known only from a partner's dose count.
UNSPECIFIED_PRODUCT = "unspecified"

#: The JWK key type each allowed algorithm verifies with.
_KEY_TYPES = {"ES256": "EC", "ES384": "EC", "ES512": "EC", "PS256": "RSA", "EdDSA": "OKP"}
_JWS_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class PartnerJWTAdapter(MappingAdapter):
    """A partner region's JWT health code, as its mapping file describes it.

    :param mapping: the checked mapping file (:func:`load_mapping`)
    """

    #: The registry prefers higher specificity: a partner's code is also a JWT, which the
    #: generic native adapter (0) would otherwise claim.
    specificity = 10
    #: we issue codes in a partner's format with our own ring key: the partner trusts our JWKS
    signs_with_ring = True
    #: clock skew tolerated between the partner's issuer and our scanner, seconds
    skew = 60

    def __init__(self, mapping: PartnerMapping):
        self.mapping = mapping
        self.scheme = mapping.scheme
        self.can_encode = bool(mapping.status_encode)
        #: the raw ``[policy]`` table, a copy the conversion engine may keep
        self.policy_table: dict = copy.deepcopy(dict(mapping.policy))
        self._jws = jwt.PyJWS(algorithms=list(mapping.algorithms))

    @property
    def name(self) -> str:
        return self.mapping.name

    @property
    def region(self) -> str:
        return self.mapping.region

    def __repr__(self) -> str:
        return f"<{type(self).__name__} scheme={self.scheme!r} file={self.mapping.file!r}>"

    # -- detect -----------------------------------------------------------------------------

    def detect(self, text: str) -> bool:
        """The prefix if the partner has one; else a JWT naming one of the partner's issuers."""
        if not isinstance(text, str):
            return False
        text = text.strip()
        if self.mapping.prefix:
            return text.startswith(self.mapping.prefix)
        if len(text) > MAX_PARTNER_CODE or not _JWS_SHAPE.fullmatch(text):
            return False
        try:
            issuer = _json_object(text.split(".")[1]).get("iss")
        except CodeError:
            return False
        return isinstance(issuer, str) and issuer in self.mapping.issuers

    # -- decode -----------------------------------------------------------------------------

    def decode(self, text: str, *, trust, at: datetime | None = None) -> Decoded:
        text = check_size(text, MAX_PARTNER_CODE)
        try:
            return self._decode(text, trust, at or utcnow())
        except CodeError:
            raise
        except HealthCodeError as exc:  # the record's own checks (a birth date, a name length)
            raise CodeError("malformed", f"a claim is not valid: {exc.message}") from None
        except Exception:  # scanned input is hostile: whatever broke, the code is unreadable
            raise CodeError("malformed", "the code could not be read") from None

    def _decode(self, text: str, trust, at: datetime) -> Decoded:
        token = self._strip_prefix(text)
        header, unverified = _split(token)
        alg = header.get("alg")
        if alg not in self.mapping.algorithms:
            raise CodeError("bad_signature", f"algorithm {alg!r} is not accepted from "
                                             f"{self.mapping.name}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise CodeError("unknown_key", "the code names no key")
        issuer = unverified.get("iss")
        if not (isinstance(issuer, str) and issuer in self.mapping.issuers
                and trust.is_trusted_issuer(issuer, self.scheme)):
            raise CodeError("untrusted_issuer", "the code's issuer is not trusted for "
                                                f"{self.mapping.name}")
        key = trust.key(issuer, kid)
        if key is None:
            raise CodeError("unknown_key", "the code is signed with a key we do not know")
        claims = _Claims(self._verified(token, key, alg), self.mapping.claims)
        issued_at, valid_until = self._validity(claims, at)
        facts = _read_facts(claims)
        record = self._record(facts, issuer=issuer, kid=kid, issued_at=issued_at,
                              valid_until=valid_until)
        return Decoded(record=record, scheme=self.scheme, issuer=issuer, kid=kid,
                       details={"partner": self.mapping.name, "region": self.mapping.region,
                                "source_status": facts.status})

    def _strip_prefix(self, text: str) -> str:
        prefix = self.mapping.prefix
        if not prefix:
            return text
        if not text.startswith(prefix):
            raise CodeError("malformed", f"a {self.mapping.name} code starts with {prefix}")
        return text[len(prefix):]

    def _verified(self, token: str, key, alg: str) -> dict:
        """The claims, once the signature holds under a key fit for ``alg``."""
        use = key.jwk.get("use")
        if use not in (None, "sig"):
            raise CodeError("wrong_key_usage", f"the key is for {use!r}, not signatures")
        pinned = key.jwk.get("alg")
        if pinned and pinned != alg:  # a key published for one algorithm signs with no other
            raise CodeError("bad_signature", f"the key is for {pinned}, not {alg}")
        if key.jwk.get("kty") != _KEY_TYPES[alg]:  # an RSA key cannot check an ES256 signature
            raise CodeError("bad_signature", f"the key cannot check {alg} signatures")
        try:
            payload = self._jws.decode(token, key.key, algorithms=list(self.mapping.algorithms))
        except (InvalidSignatureError, InvalidAlgorithmError, InvalidKeyError):
            raise CodeError("bad_signature", "the signature does not match") from None
        except PyJWTError:
            raise CodeError("malformed", "not a signed code") from None
        return _json_object(payload)

    def _validity(self, claims: "_Claims", at: datetime) -> tuple[datetime, datetime]:
        skew = timedelta(seconds=self.skew)
        issued_at = claims.time("issued_at", required=True)
        valid_until = claims.time("valid_until", required=True)
        not_before = claims.time("not_before")
        for start in (not_before, issued_at):
            if start is not None and start > at + skew:
                raise CodeError("not_yet_valid", "the code is not valid yet")
        if valid_until <= at - skew:
            raise CodeError("expired", "the code has expired")
        return issued_at, valid_until

    def _record(self, facts: "_Facts", *, issuer: str, kid: str, issued_at: datetime,
                valid_until: datetime) -> Record:
        """Apply the vocabularies (refusing what they do not list) and build the record."""
        subject = Subject(name=facts.name, name_latin=facts.name_latin,
                          birth_date=facts.birth_date, document=self._document(facts.document))
        evidence = Evidence(tests=_tests(facts.test),
                            vaccinations=_vaccinations(facts.doses, facts.complete, issued_at))
        provenance = Provenance(scheme=self.scheme, issuer=issuer,
                                source_id=facts.code_id or facts.subject, issued_at=issued_at,
                                valid_until=valid_until, key_id=kid)
        return Record(subject=subject, status=self._status(facts.status), reasons=(),
                      evidence=evidence, provenance=provenance)

    def _status(self, value) -> str:
        verdict = self.mapping.status_decode.get(_as_key(value, "status"))
        if verdict is None:
            raise CodeError("policy_refused", f"unknown status value {value!r} from "
                                              f"{self.mapping.name}")
        if verdict == REFUSE:
            raise CodeError("policy_refused",
                            f"status {value} is not recognised under this agreement")
        return verdict

    def _document(self, raw: tuple | None) -> Document | None:
        if raw is None:
            return None
        kind, number, region = raw
        ours = self.mapping.documents_decode.get(_as_key(kind, "document type"))
        if ours is None:
            raise CodeError("policy_refused", f"document type {kind!r} is not recognised under "
                                              f"this agreement")
        return Document(type=ours, number=number, region=region)

    # -- encode -----------------------------------------------------------------------------

    def encode(self, record: Record, *, signer: Signer, at: datetime | None = None) -> str:
        """Issue ``record`` in the partner's layout, signed by ``signer``.

        :raises CodeError: ``unsupported_scheme`` when the file has no ``[status.encode]``;
            ``policy_refused`` for a record without a name or status, or with a status or
            document type the file cannot express; ``expired`` when the record's validity has
            ended; ``too_large`` when the code would not fit one QR code
        """
        if not self.can_encode:
            return super().encode(record, signer=signer, at=at)
        at = (at or utcnow()).astimezone(timezone.utc).replace(microsecond=0)
        claims = self._claims_for(record, signer, at)
        token = self._sign(claims, signer)
        code = (self.mapping.prefix or "") + token
        if len(code) > MAX_PARTNER_CODE:
            raise CodeError("too_large", "the record does not fit one QR code in this format")
        return code

    def _claims_for(self, record: Record, signer: Signer, at: datetime) -> dict:
        layout, out = self.mapping.claims, _Layout(self.mapping.claims)
        subject = record.subject
        if not subject.name:
            raise CodeError("policy_refused", f"a {self.mapping.name} code needs a name")
        out.put("iss", self.mapping.encode.issuer or signer.issuer, raw=True)
        out.put("subject", subject.subject_id or _one_off_id())
        out.put("code_id", _one_off_id())
        out.put("name", subject.name)
        out.put("name_latin", subject.name_latin)
        out.put("birth_date", subject.birth_date)
        out.put("status", self._partner_status(record.status))
        if subject.document is not None and layout.has_document:
            out.put("document_type", self._partner_document(subject.document.type))
            out.put("document_number", subject.document.number)
            out.put("document_region", subject.document.region)
        out.put_time("issued_at", at)
        out.put_time("not_before", at)
        out.put_time("valid_until", self._expiry(record, at))
        if record.evidence.tests and layout.has_test:
            latest = max(record.evidence.tests, key=lambda t: t.sampled_at)
            if latest.result == "unknown":  # kept as issued by another scheme: not ours to say
                raise CodeError("policy_refused", "the latest test's result is not known")
            out.put("test_type", latest.type)
            out.put("test_result", latest.result)
            out.put_time("test_sampled_at", latest.sampled_at)
        if record.evidence.vaccinations and layout.has_vaccination:
            doses = record.evidence.vaccinations
            out.put("vaccination_doses", max(v.dose_number for v in doses))
            out.put("vaccination_complete", any(v.completes_series for v in doses))
        return out.claims

    def _partner_status(self, status: str | None):
        if status is None:
            raise CodeError("policy_refused", f"a {self.mapping.name} code needs a colour")
        if status not in self.mapping.status_encode:
            raise CodeError("policy_refused", f"a {status} status cannot be issued under the "
                                              f"{self.mapping.name} agreement")
        return self.mapping.status_encode[status]

    def _partner_document(self, kind: str) -> str:
        if kind not in self.mapping.documents_encode:
            raise CodeError("policy_refused", f"document type {kind!r} has no equivalent under "
                                              f"the {self.mapping.name} agreement")
        return self.mapping.documents_encode[kind]

    def _expiry(self, record: Record, at: datetime) -> datetime:
        until = at + timedelta(seconds=self.mapping.encode.ttl)
        if record.provenance is not None and record.provenance.valid_until is not None:
            until = min(until, record.provenance.valid_until.replace(microsecond=0))
        if until <= at:
            raise CodeError("expired", "the record's validity has already ended")
        return until

    def _sign(self, claims: dict, signer: Signer) -> str:
        settings = self.mapping.encode
        if signer.algorithm and signer.algorithm != settings.algorithm:
            raise MappingFileError(self.mapping.file, "encode.algorithm",
                                   f"our signing key makes {signer.algorithm} signatures, "
                                   f"not {settings.algorithm}")
        # UTF-8, not \\uXXXX escapes: a Chinese name costs 3 bytes a character instead of 6.
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        # typ None drops the header: it is optional and every byte makes the QR denser.
        headers = {"kid": signer.kid, "typ": settings.typ}
        try:
            return jwt.PyJWS(algorithms=[settings.algorithm]).encode(
                payload, signer.private_key, algorithm=settings.algorithm, headers=headers)
        except (PyJWTError, TypeError, ValueError) as exc:
            raise MappingFileError(self.mapping.file, "encode.algorithm",
                                   f"our signing key cannot make {settings.algorithm} "
                                   f"signatures: {exc}") from exc


# -- loading ----------------------------------------------------------------------------------

def load_partners(directory: str | PathLike) -> list[PartnerJWTAdapter]:
    """One adapter per ``*.toml`` file of ``directory``, in file-name order.

    :raises MappingFileError: for the first file that breaks the schema, or when two files
        claim the same scheme name or the same issuer (the trust store files an issuer under one
        scheme, and a prefixless code is recognised by its issuer)
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MappingFileError(directory, None, "not a folder")
    adapters: list[PartnerJWTAdapter] = []
    schemes: dict[str, str] = {}
    issuers: dict[str, str] = {}
    # Dot files are editor locks and backups (".#mo.toml"), not agreements.
    for file in sorted((p for p in directory.glob("*.toml") if not p.name.startswith(".")),
                       key=lambda p: p.name):
        mapping = load_mapping(file)
        if mapping.scheme in schemes:
            raise MappingFileError(file, "scheme", f"{mapping.scheme!r} is already the scheme "
                                                   f"of {schemes[mapping.scheme]}")
        schemes[mapping.scheme] = mapping.file
        for i, issuer in enumerate(mapping.issuers):
            if issuer in issuers:
                raise MappingFileError(file, f"issuers[{i}]", f"{issuer!r} is already an "
                                                              f"issuer of {issuers[issuer]}")
            issuers[issuer] = mapping.file
        adapters.append(PartnerJWTAdapter(mapping))
    return adapters


# -- reading claims ---------------------------------------------------------------------------

def _json_object(segment: str | bytes) -> dict:
    """A base64url segment (or verified payload bytes) holding a JSON object."""
    try:
        raw = base64url_decode(segment) if isinstance(segment, str) else segment
        value = json.loads(raw)
    except (ValueError, TypeError):
        raise CodeError("malformed", "not a JSON object") from None
    if not isinstance(value, dict):
        raise CodeError("malformed", "not a JSON object")
    return value


def _split(token: str) -> tuple[dict, dict]:
    """Header and unverified claims of a compact JWS, or ``malformed``."""
    if not _JWS_SHAPE.fullmatch(token):
        raise CodeError("malformed", "not a signed code")
    head, body, _ = token.split(".")
    return _json_object(head), _json_object(body)


def _lookup(claims: dict, path: str):
    """The value at a dotted path; ``None`` when absent (JSON null counts as absent)."""
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict):
            raise CodeError("malformed", f"claim {path} is not inside an object")
        node = node.get(part)
        if node is None:
            return None
    return node


def _as_key(value, what: str) -> str:
    """A vocabulary value as the mapping file's table key: text, numbers by ``str()``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise CodeError("malformed", f"the {what} is neither text nor a number")


class _Claims:
    """Verified claims, read by canonical fact name; a wrong shape is ``malformed``."""

    def __init__(self, claims: dict, layout: ClaimMap):
        self.claims, self.layout = claims, layout

    def get(self, fact: str, *, required: bool = False):
        path = getattr(self.layout, fact)
        value = None if path is None else _lookup(self.claims, path)
        if value is None and required:
            raise CodeError("malformed", f"claim {path} ({fact.replace('_', ' ')}) is missing")
        return value

    def text(self, fact: str, *, required: bool = False) -> str | None:
        value = self.get(fact, required=required)
        if value is not None and not isinstance(value, str):
            raise CodeError("malformed", f"claim {getattr(self.layout, fact)} is not text")
        return value

    def identifier(self, fact: str, *, required: bool = False) -> str | None:
        """An id: text, or a whole number some partners use."""
        value = self.get(fact, required=required)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if value is not None and not isinstance(value, str):
            raise CodeError("malformed", f"claim {getattr(self.layout, fact)} is not an id")
        return value

    def partial_date(self, fact: str) -> str | None:
        value = self.text(fact)
        if value is None:
            return None
        try:
            return parse_partial_date(value, fact)
        except HealthCodeError:
            raise CodeError("malformed", f"claim {getattr(self.layout, fact)} is not YYYY, "
                                         f"YYYY-MM or YYYY-MM-DD") from None

    def scalar(self, fact: str, *, required: bool = False):
        value = self.get(fact, required=required)
        if value is not None:
            _as_key(value, fact.replace("_", " "))
        return value

    def count(self, fact: str) -> int | None:
        value = self.get(fact)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise CodeError("malformed", f"claim {getattr(self.layout, fact)} is not a count")
        return value

    def flag(self, fact: str) -> bool | None:
        value = self.get(fact)
        if value is not None and not isinstance(value, bool):
            raise CodeError("malformed", f"claim {getattr(self.layout, fact)} is not true/false")
        return value

    def time(self, fact: str, *, required: bool = False) -> datetime | None:
        value = self.get(fact, required=required)
        if value is None:
            return None
        path = getattr(self.layout, fact)
        if self.layout.time_format(fact) == "iso":
            return _iso_time(value, path)
        return _numeric_time(value, path)


def _numeric_time(value, path: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodeError("malformed", f"claim {path} is not a time in seconds")
    try:
        return datetime.fromtimestamp(value, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise CodeError("malformed", f"claim {path} is out of range") from None


def _iso_time(value, path: str) -> datetime:
    """An ISO 8601 date-time with an offset: a local time without one would be read hours off."""
    if not isinstance(value, str):
        raise CodeError("malformed", f"claim {path} is not an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CodeError("malformed", f"claim {path} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise CodeError("malformed", f"claim {path} has no UTC offset")
    return parsed.astimezone(timezone.utc)


@dataclass(frozen=True)
class _Facts:
    """The partner's facts, type-checked but not yet read through any vocabulary."""

    subject: str
    code_id: str | None
    name: str
    name_latin: str | None
    birth_date: str | None
    status: Any
    document: tuple | None
    test: tuple | None
    doses: int | None
    complete: bool | None


def _read_facts(claims: _Claims) -> _Facts:
    return _Facts(
        subject=claims.identifier("subject", required=True),
        code_id=claims.identifier("code_id"),
        name=claims.text("name", required=True),
        name_latin=claims.text("name_latin"),
        birth_date=claims.partial_date("birth_date"),
        status=claims.scalar("status", required=True),
        document=_all_or_none(claims, "document", (
            claims.scalar("document_type"), claims.text("document_number"),
            claims.text("document_region"))),
        test=_all_or_none(claims, "test", (
            claims.text("test_type"), claims.text("test_result"),
            claims.time("test_sampled_at"))),
        doses=claims.count("vaccination_doses"),
        complete=claims.flag("vaccination_complete"))


def _all_or_none(claims: _Claims, what: str, values: tuple) -> tuple | None:
    """Half a document or half a test is no fact: either all its claims are there or none."""
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        raise CodeError("malformed", f"the {what} claims are incomplete")
    return values


def _tests(raw: tuple | None) -> tuple[TestResult, ...]:
    if raw is None:
        return ()
    kind, result, sampled_at = raw
    if kind not in TEST_TYPES:
        raise CodeError("policy_refused", f"test type {kind!r} is not recognised")
    if result not in TEST_RESULTS:
        raise CodeError("policy_refused", f"test result {result!r} is not recognised")
    return (TestResult(type=kind, result=result, sampled_at=sampled_at),)


def _vaccinations(doses: int | None, complete: bool | None,
                  issued_at: datetime) -> tuple[Vaccination, ...]:
    """A dose count as one summary dose; zero doses is no evidence, not a vaccination."""
    if doses is None:
        if complete is not None:
            raise CodeError("malformed", "a complete series is claimed without a dose count")
        return ()
    if doses == 0:
        if complete:
            raise CodeError("malformed", "a complete series of zero doses")
        return ()
    # The year of issue, not the day: see the module docstring (no dose date to count from).
    return (Vaccination(product=UNSPECIFIED_PRODUCT, dose_number=doses,
                        series_doses=doses if complete else None,
                        administered_on=f"{issued_at.year:04d}"),)


# -- laying claims out ------------------------------------------------------------------------

class _Layout:
    """Claims being built at the paths the mapping file names; unmapped facts are skipped."""

    def __init__(self, layout: ClaimMap):
        self.layout = layout
        self.claims: dict = {}

    def put(self, fact: str, value, *, raw: bool = False) -> None:
        """Set ``fact`` (or, with ``raw``, the literal claim ``fact``) unless either is absent."""
        path = fact if raw else getattr(self.layout, fact)
        if path is None or value is None:
            return
        *parents, leaf = path.split(".")
        node = self.claims
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def put_time(self, fact: str, when: datetime) -> None:
        """Whole seconds in either format, so a code reads back the same whatever its layout."""
        when = when.replace(microsecond=0)
        if self.layout.time_format(fact) == "iso":
            self.put(fact, format_time(when))
        else:
            self.put(fact, int(when.timestamp()))


def _one_off_id() -> str:
    """A random id that links to nothing: for codes whose record has no id to give."""
    return secrets.token_urlsafe(12)
