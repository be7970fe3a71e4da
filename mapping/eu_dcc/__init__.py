"""The EU Digital COVID Certificate ("HC1:") adapter.

A DCC travels as ``HC1:`` + base45(zlib(COSE_Sign1(CWT claims))), the CWT carrying the
certificate under claim -260 / key 1 and the signer identified by an 8-byte ``kid`` (the first
bytes of the SHA-256 of its Document Signer Certificate, DSC). Each step of that chain is a
separate module-level function so the conformance suite can test the steps one by one, and each
raises :class:`CodeError` with ``step`` in its detail so a failure can be traced to the link
that broke.

Choices the specification leaves open, and what this module does:

- A code that is not zlib-compressed is refused (``malformed``), as the upstream test set
  expects (``common/Z2``), although a few scanners accept bare COSE.
- Inflation stops at :data:`MAX_INFLATED` bytes (``too_large``): a QR code holds at most ~3 kB
  of base45-decoded data, so anything that inflates beyond 64 kB is a decompression bomb.
- ``alg`` and ``kid`` are read from the protected header first, else from the unprotected one
  (upstream ``common/CO19``, ``CO20``). When both headers name a ``kid``, the protected one wins.
  The hcert specification ("Key Identifier") says the kid MAY be unprotected and verifiers MUST
  accept both; an ``alg`` outside the protected header is accepted with a warning.
- Envelopes: COSE_Sign1 tagged 18 or untagged, inside CWT tag 61 or not (a bare tag 61 around
  an untagged message is accepted with a warning); the protected header as an empty bstr, an
  encoded empty map, or (a warning) an empty map where the bstr belongs, which is signed as the
  empty bstr.
- Signatures (never relaxed: the signature must verify with a trusted DSC whose kid the code
  names): ECDSA is checked with the curve of the DSC's own key, the hash named by ``alg``
  (ES256 -7, ES384 -35, ES512 -36) and a raw ``r||s`` of that curve's size, as the
  Corona-Warn-App's DscSignatureValidator does (it verifies "SHA256withECDSA" with whatever key
  the DSC holds). A P-384/P-521 DSC or a hash other than the hcert specification's ES256 is a
  warning. RSA DSCs verify PS256 (-37, salt 32).
- Validity: a code is accepted only at instants inside both its own window ``[iat, exp]`` and
  its DSC's ``[notBefore, notAfter]``: before either starts it is ``not_yet_valid``, after either
  ends it is ``expired``. The hcert specification makes it the *issuer's* duty that ``iat`` does
  not predate and ``exp`` does not exceed the DSC's validity; a code that breaks it is reported
  (warnings ``dcc_iat_before_dsc``, ``dcc_exp_beyond_dsc``) and its ``valid_until`` is cut to
  the DSC's notAfter, so it is never accepted outside a window. A CWT without ``iat`` is checked
  against ``exp`` and the DSC only (warning).
- CWT claims (RFC 8392): NumericDates may be integers or floats; claim keys written as text
  (``"4"``), an ``exp`` wrapped in CBOR tag 1, times before 1970 or beyond year 9999 are read
  with a warning (beyond 9999 counts as 9999-12-31, still bounded by the DSC).
- Bytes after the zlib stream are refused (zlib reports them for free); bytes after the COSE
  message inside it are ignored, like cbor2 does (see :func:`_cbor_loads`).
- Key usage, as the hcert specification's "Key Usage Policy Identifiers" (DSC limitation) and
  the Corona-Warn-App apply it: only the DCC extended-key-usage OIDs restrict which types a DSC
  may sign; a DSC without an EKU, with an empty one, or with an EKU holding only other OIDs may
  sign every type. (The dgc-testdata expectations treat the last case as not allowed; the
  specification and the reference verifier do not.)
- Payloads of every schema version 1.0.0 to 1.3.x are read (:func:`to_record`); value-set
  membership is left to acceptance rules: a code outside today's value sets is kept as issued.

The package: :mod:`.cose` is the chain up to a verified signature (prefix, base45, zlib,
COSE_Sign1, the DSC's key), :mod:`.claims` the CWT claims with the validity and key-usage
checks, :mod:`.payload` the payload as a canonical record, :mod:`.signers` the kid index of a
trust store, :mod:`.issue` what issuing needs besides the envelope; this module is the adapter.
"""
from __future__ import annotations

import re
import threading
import weakref
import zlib
from datetime import datetime, timedelta, timezone

import base45
import cbor2

from healthcode.certs import Certificate
from healthcode.errors import ConfigurationError, HealthCodeError
from healthcode.record import Record, Recovery, Subject, TestResult, Vaccination, format_time

from ..base import CodeError, Decoded, MappingAdapter, Signer, Warnings, check_size, utcnow
from .claims import (CLAIM_EXP, CLAIM_HCERT, CLAIM_IAT, CLAIM_ISS, Claims, certificate_type,
                     check_key_usage, check_validity, read_claims, validity_notes)
from .cose import (_COSE_ALG_NAMES, ALG_ES256, HEADER_ALG, HEADER_KID, MAX_INFLATED, PREFIX,
                   TAG_COSE_SIGN1, CoseSign1, _error, _Key, _verify, algorithm_notes, b45decode,
                   decompress, parse_cose, sig_structure, unprefix, verify_signature)
from .issue import (_algorithm, _disease_code, _full_date, _require, _sign, _signer_certificate,
                    icao_transliterate, luhn_mod_n, uvci)
from .payload import TEST_RESULT_CODES, TEST_TYPE_CODES, to_record
from .signers import _SignerIndex, Verified

# Names this package had as one module, which tests, benches and rules still import from here.
from .claims import KEY_USAGE_OIDS, TYPE_KEYS  # noqa: F401,E402
from .cose import ALG_ES384, ALG_ES512, ALG_PS256, MAX_CBOR_DEPTH, TAG_CWT  # noqa: F401,E402
from .issue import _load_signer_certificate  # noqa: F401,E402
from .payload import DISEASE_COVID  # noqa: F401,E402

__all__ = [
    "EUDCCAdapter", "CoseSign1", "Claims", "Verified", "PREFIX", "MAX_INFLATED",
    "unprefix", "b45decode", "decompress", "parse_cose", "sig_structure", "verify_signature",
    "read_claims", "certificate_type", "check_validity", "check_key_usage", "to_record",
    "icao_transliterate", "uvci", "luhn_mod_n",
]

SCHEMA_VERSION = "1.3.0"

#: How long a kid's entry in the signer index is used before it is checked against the store
#: again (:class:`~mapping.eu_dcc.signers._SignerIndex`). TrustStore cannot remove certificates
#: today; should it learn to, a removed DSC stays usable for at most this long. Checking on
#: every scan costs a SHA-256 of the DER (~5 µs).
RECHECK_SECONDS = 1.0


class EUDCCAdapter(MappingAdapter):
    """EU DCC: decodes and verifies ``HC1:`` codes, and issues them with our DSC."""

    scheme = "eu-dcc"
    can_encode = True
    #: DCC QR codes are rendered alphanumeric with error correction level Q (spec, 2.5).
    qr_error_correction = "Q"

    def __init__(self):
        self._indexes: "weakref.WeakKeyDictionary[object, _SignerIndex]" = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        # (weak reference to the last store, its index); a callable answering None = none yet
        self._last: tuple[weakref.ref, _SignerIndex | None] = (lambda: None, None)

    # -- detect / decode -------------------------------------------------------------------

    def detect(self, text: str) -> bool:
        return isinstance(text, str) and text.lstrip().startswith(PREFIX)

    def decode(self, text: str, *, trust, at: datetime | None = None) -> Decoded:
        """Decode, verify and check ``text`` at ``at``; every failure is a CodeError."""
        try:
            verified = self.open(text, trust=trust)
            self.check(verified, at)
            return self.to_decoded(verified)
        except CodeError:
            raise
        except HealthCodeError as exc:  # InvalidField from the record: the payload is bad
            raise _error("malformed", "mapping", f"the certificate cannot be read: "
                                                 f"{exc.message}") from None
        except Exception:  # scanned input is hostile: no other exception may escape
            raise _error("malformed", "internal", "the code could not be decoded") from None

    def open(self, text: str, *, trust) -> Verified:
        """Every step up to a verified signature and readable claims (no clock involved)."""
        try:
            text = check_size(text)
        except CodeError as exc:
            raise _error(exc.reason, "input", exc.message) from None
        cose = parse_cose(decompress(b45decode(unprefix(text))))
        key = self._find_key(cose, trust)
        claims = read_claims(cose.payload)
        return Verified(cose, claims, key.certificate, certificate_type(claims.dcc), key.curve)

    def check(self, verified: Verified, at: datetime | None = None) -> None:
        """Validity at ``at`` (default now) and the signer's key usage."""
        at = utcnow() if at is None else at
        if at.tzinfo is None:  # a naive instant is UTC, as everywhere in the service
            at = at.replace(tzinfo=timezone.utc)
        check_validity(verified.claims, verified.certificate, at)
        check_key_usage(verified.certificate, verified.certificate_type)

    def to_decoded(self, verified: Verified) -> Decoded:
        claims, certificate = verified.claims, verified.certificate
        warnings = Warnings()
        notes = verified.cose.notes + claims.notes
        if claims.expires > certificate.not_after or \
                claims.issued_at is not None and claims.issued_at < certificate.not_before:
            notes += validity_notes(claims, certificate)
        if verified.cose.alg != ALG_ES256 or verified.curve != "secp256r1":
            notes += algorithm_notes(verified.cose, certificate)  # the hcert primary: none
        for code, message in notes:
            warnings.add(code, message)
        try:
            record = to_record(claims, verified.certificate_type, verified.cose.kid, warnings,
                               valid_until=min(claims.expires, certificate.not_after))
        except HealthCodeError as exc:
            if isinstance(exc, CodeError):
                raise
            raise _error("malformed", "mapping",
                         f"the certificate cannot be read: {exc.message}") from None
        version = claims.dcc.get("ver")
        return Decoded(record=record, scheme=self.scheme or "eu-dcc", issuer=claims.issuer,
                       kid=record.provenance.key_id,
                       details={"certificate_type": verified.certificate_type,
                                "schema_version": version if isinstance(version, str) else None},
                       warnings=warnings.as_tuple())

    def find_signer(self, cose: CoseSign1, trust) -> Certificate:
        """The trusted DSC with ``cose.kid`` whose key made the signature."""
        return self._find_key(cose, trust).certificate

    def _find_key(self, cose: CoseSign1, trust) -> _Key:
        scheme = self.scheme or "eu-dcc"
        index = self._index(trust)
        signed = sig_structure(cose)
        hint = index.hint(trust, cose.kid, scheme, RECHECK_SECONDS)
        if hint:
            for key in hint:
                if _verify(key, cose, signed):
                    return key
        # The hint missed or failed: ask the store itself, which may have changed.
        index.refresh(trust.certificates(scheme=scheme))
        candidates = [k for k in index.by_kid.get(cose.kid, ()) if k not in hint]
        for key in candidates:
            if _verify(key, cose, signed):
                return key
        if not candidates and not hint:
            raise _error("unknown_key", "key", "no trusted signer certificate has this kid")
        if cose.alg not in _COSE_ALG_NAMES:
            raise _error("bad_signature", "signature", f"unsupported COSE algorithm {cose.alg}")
        raise _error("bad_signature", "signature", "the signature does not verify")

    def _index(self, trust) -> _SignerIndex:
        # A service scans against one store almost always: check it before the weak map.
        last_store, last_index = self._last
        if last_store() is trust:
            return last_index
        index = self._indexes.get(trust)
        if index is None:
            with self._lock:
                index = self._indexes.get(trust)
                if index is None:
                    index = self._indexes[trust] = _SignerIndex()
        self._last = (weakref.ref(trust), index)
        return index

    # -- encode ------------------------------------------------------------------------------

    def encode(self, record: Record, *, signer: Signer, at: datetime | None = None) -> str:
        """Issue ``record`` as an ``HC1:`` code signed with our DSC.

        ``exp`` is the record's own ``provenance.valid_until`` when it has one, else one day
        after issuance (a DCC must expire; a day suits a converted health code), and never
        beyond the DSC's notAfter, which verifiers would refuse.
        """
        at = utcnow() if at is None else at
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        certificate = _signer_certificate(signer.certificate)
        if not certificate.valid_at(at):
            raise ConfigurationError("the EU DCC signer certificate is not valid now")
        issued_at = int(at.timestamp())
        expires = self._expiry(record, at, certificate)
        country = (signer.country or "").upper() or None
        dcc = self.to_dcc(record, issuer=signer.issuer, country=country)
        claims = {CLAIM_ISS: signer.country or signer.issuer, CLAIM_IAT: issued_at,
                  CLAIM_EXP: expires, CLAIM_HCERT: {1: dcc}}
        return PREFIX + self._seal(claims, signer.private_key, certificate)

    @staticmethod
    def _expiry(record: Record, at: datetime, certificate: Certificate) -> int:
        until = record.provenance.valid_until if record.provenance else None
        if until is None:
            until = at + timedelta(days=1)
        if until <= at:
            raise CodeError("policy_refused", "the record's validity ended before issuance")
        return int(min(until, certificate.not_after).timestamp())

    @staticmethod
    def _seal(claims: dict, private_key, certificate: Certificate) -> str:
        """COSE_Sign1 (tag 18, alg + kid protected), zlib level 9, base45."""
        payload = cbor2.dumps(claims)
        alg = _algorithm(private_key)
        protected = cbor2.dumps({HEADER_ALG: alg, HEADER_KID: certificate.dcc_kid})
        signed = cbor2.dumps(["Signature1", protected, b"", payload])
        signature = _sign(private_key, alg, signed)
        message = cbor2.dumps(cbor2.CBORTag(TAG_COSE_SIGN1, [protected, {}, payload, signature]))
        return base45.b45encode(zlib.compress(message, 9)).decode("ascii")

    def to_dcc(self, record: Record, *, issuer: str, country: str | None) -> dict:
        """The DCC payload (schema 1.3.0) of ``record``: its name, birth date and one entry.

        A DCC holds exactly one entry; a record with several kinds gives its test (the
        freshest fact), else its vaccination, else its recovery, and the latest of that kind.
        """
        evidence = record.evidence
        cert_issuer = (issuer or "")[:80] or None
        if evidence.tests:
            group = {"t": [self._test_entry(max(evidence.tests, key=lambda t: t.sampled_at),
                                            cert_issuer, country)]}
        elif evidence.vaccinations:
            latest = max(evidence.vaccinations,
                         key=lambda v: (v.administered_on, v.dose_number))
            group = {"v": [self._vaccination_entry(latest, cert_issuer, country)]}
        elif evidence.recoveries:
            latest = max(evidence.recoveries, key=lambda r: r.first_positive_on)
            group = {"r": [self._recovery_entry(latest, cert_issuer, country)]}
        else:
            raise CodeError("policy_refused", "a DCC must carry a vaccination, test or recovery")
        return {"ver": SCHEMA_VERSION, "nam": self._name(record.subject),
                "dob": record.subject.birth_date or "", **group}

    @staticmethod
    def _name(subject: Subject) -> dict:
        """``nam``: the names as written plus their ICAO 9303 forms, of which one is required."""
        family, given = subject.family_name, subject.given_name
        if family is None and given is None and subject.name:
            family = subject.name  # only a full name is known: it is the primary identifier
        family_latin = icao_transliterate(subject.family_name_latin or family
                                          or (subject.name_latin if given is None else None))
        given_latin = icao_transliterate(subject.given_name_latin or given)
        if family_latin is None and given_latin is None:
            raise CodeError("policy_refused",
                            "a DCC needs the name in Latin letters (ICAO 9303), and none is known")
        name = {"fn": family and family[:80], "fnt": family_latin,
                "gn": given and given[:80], "gnt": given_latin}
        return {k: v for k, v in name.items() if v is not None}

    @staticmethod
    def _uvci_country(country: str | None, entry_country: str | None) -> str:
        for candidate in (country, entry_country):
            if candidate and re.fullmatch("[A-Z]{2}", candidate):
                return candidate
        raise CodeError("policy_refused", "a UVCI needs a two-letter issuing country")

    def _vaccination_entry(self, v: Vaccination, issuer, country) -> dict:
        if v.dose_number < 1:
            raise CodeError("policy_refused", "a DCC dose number starts at 1")
        entry = _require({"tg": _disease_code(v.disease), "vp": v.vaccine_type, "mp": v.product,
                          "ma": v.manufacturer, "dn": v.dose_number, "sd": v.series_doses,
                          "dt": _full_date(v.administered_on, "vaccination"), "co": v.country,
                          "is": issuer}, "vaccination")
        entry["ci"] = uvci(self._uvci_country(country, v.country))
        return entry

    def _test_entry(self, t: TestResult, issuer, country) -> dict:
        codes = {v: k for k, v in TEST_TYPE_CODES.items()}
        if t.type not in codes:
            raise CodeError("policy_refused", f"a DCC test is PCR or rapid antigen, not {t.type}")
        results = {v: k for k, v in TEST_RESULT_CODES.items()}
        if t.result not in results:
            raise CodeError("policy_refused", f"a DCC test result is positive or negative, "
                                              f"not {t.result}")
        entry = _require({"tg": _disease_code(t.disease), "tt": codes[t.type],
                          "sc": format_time(t.sampled_at), "tr": results[t.result],
                          "co": t.country, "is": issuer}, "test")
        optional = {"nm": t.name, "ma": t.manufacturer, "tc": t.centre}
        entry.update({k: v[:80] for k, v in optional.items() if v})
        entry["ci"] = uvci(self._uvci_country(country, t.country))
        return entry

    def _recovery_entry(self, r: Recovery, issuer, country) -> dict:
        entry = _require({"tg": _disease_code(r.disease),
                          "fr": _full_date(r.first_positive_on, "the first positive test"),
                          "co": r.country, "is": issuer,
                          "df": r.valid_from and _full_date(r.valid_from, "validity start"),
                          "du": r.valid_until and _full_date(r.valid_until, "validity end")},
                         "recovery")
        entry["ci"] = uvci(self._uvci_country(country, r.country))
        return entry
