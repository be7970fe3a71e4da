"""ICAO VDS-NC (Visible Digital Seal for non-constrained environments): proof of vaccination
(``icao.vacc``) and proof of test (``icao.test``) seals.

A seal is one JSON object ``{"data": {"hdr": {...}, "msg": {...}}, "sig": {"alg", "cer",
"sigvl"}}``; some issuers wrap it in a one-element array. ``sig.cer`` is the DER signer
certificate (the DSC) in base64url, ``sigvl`` a raw ``r||s`` ECDSA signature in base64url.

The signature covers the RFC 8785 (JCS) canonical form of ``data``, *not* the bytes as they
were transmitted: issuers print seals with their own key order and whitespace, so a verifier that
signs-what-it-sees rejects most real seals. Re-canonicalising is only safe if the parse is
unambiguous, so duplicate member names are refused as malformed (two parsers could otherwise
disagree about which value was signed).

Trust: the DSC is accepted when the trust store holds it, or when the trust store holds a CSCA
whose subject is the DSC's issuer and whose key verifies the DSC's signature. The adapter cannot
issue seals (``can_encode = False``): we hold no ICAO signer, and a faithful seal needs facts the
canonical record does not keep (administering centre, test provider contact, report time).

Checks, in order, each with its :data:`~healthcode.errors.CODE_REASONS` reason:

1. size, JSON, shape of ``data``/``sig`` -> ``too_large`` / ``malformed``; a ``hdr.t`` other
   than ``icao.vacc``/``icao.test`` or a ``hdr.v`` other than 1 -> ``unsupported_scheme``;
2. the DSC is trusted directly or through a trusted CSCA -> else ``unknown_key``;
3. ``sig.alg`` is ES256/ES384/ES512, matches the key's curve, and ``sigvl`` verifies over
   JCS(``data``) -> else ``bad_signature``;
4. the DSC may sign this seal type -> else ``wrong_key_usage``: its extended key usage, when
   present and non-empty, names the VDS-NC signer purpose (2.23.136.1.1.14.2); its ICAO
   document-type extension (2.23.136.1.1.6.2), when present, lists ``NV`` for a vaccination or
   ``NT`` for a test seal; its key usage, when present, allows digital signatures;
5. the DSC is valid at ``at`` -> else ``expired`` / ``not_yet_valid``. A CSCA only has to have
   been valid when it issued the DSC (at the DSC's notBefore): ICAO PKI uses the chain model, in
   which a DSC may outlive a rolled-over CSCA but never its own validity.

Revocation: where the trust store knows CSCA CRLs (``TrustStore.is_certificate_revoked``), a
DSC they list is ``revoked``. The CRL distribution points inside a DSC are URLs named by the
code, which we never fetch.

Field variants of the countries that issued seals, accepted and reported in
:attr:`~mapping.base.Decoded.warnings` (the ICAO TR "VDS for non-constrained environments" 1.1
says; where it is silent, what the seals in circulation do):

- the certificate identifier under another member name: ``ucl``, or a test seal's ``uvci`` /
  a vaccination seal's ``utci`` (``vds_identifier_name``);
- dates (``pid.dob``, ``vd.dvc``, ``vd.dvn``) in ISO 8601 basic format, with placeholders for
  unknown parts, or as date-times; date-times (``dat.sc``, ``dat.ri``) without an offset
  (:mod:`mapping.dates`);
- ``pid.i``, ``pid.dob``, ``pid.sex`` absent (all optional in the TR); ``pid.n`` with the MRZ
  filler ``<`` instead of spaces (``vds_name_mrz_fillers``);
- ``ve`` or ``vd`` as a single object rather than a list, ``vd.seq`` as text or absent (the
  dose's position is taken) (``vds_shape``);
- ``tr.r`` / ``tr.tc`` outside the TR's vocabularies: kept as issued, the result ``unknown``
  (``value_outside_value_set``); ``hdr.v`` written as text (``vds_version_text``);
- ``sig.cer`` / ``sig.sigvl`` in standard base64 rather than base64url (``vds_base64_standard``);
- ``sig.alg`` ES256/ES384/ES512 verified with the hash it names on the curve of the DSC's own
  key, with ``r||s`` of that curve's size; a hash that is not the curve's usual one is reported
  (``vds_alg_curve_mismatch``), as for EU DCC signers.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from healthcode.certs import Certificate, load_certificate
from healthcode.errors import HealthCodeError
from healthcode.record import Document, Evidence, Provenance, Record, Subject, TestResult, \
    Vaccination

from .base import MAX_CODE_LENGTH, CodeError, Decoded, MappingAdapter, Warnings, check_size, utcnow
from .dates import read_date, read_date_time

__all__ = ["ICAOVDSAdapter", "canonical_json", "verify_issued_by_raw", "SEAL_TYPES",
           "VDS_NC_SIGNER_EKU"]

#: Seal types this adapter reads, with the ICAO document-type category a DSC must list for them.
SEAL_TYPES = {"icao.vacc": "NV", "icao.test": "NT"}

#: Extended key usage of a VDS-NC signer certificate (ICAO TR VDS-NC).
VDS_NC_SIGNER_EKU = "2.23.136.1.1.14.2"
_ANY_EKU = "2.5.29.37.0"
_MAX_SAFE_INTEGER = 2 ** 53 - 1
_DOCUMENT_TYPE_EXTENSION = "2.23.136.1.1.6.2"
_KEY_USAGE_EXTENSION = "2.5.29.15"

#: sig.alg allow-list: ECDSA with the hash it names (built once: immutable), and the curve it
#: is usually paired with.
_ALGORITHMS = {
    "ES256": (ec.ECDSA(hashes.SHA256()), "secp256r1"),
    "ES384": (ec.ECDSA(hashes.SHA384()), "secp384r1"),
    "ES512": (ec.ECDSA(hashes.SHA512()), "secp521r1"),
}

#: ICD-11 codes VDS-NC seals put in ``dis``; the canonical record names the disease.
_DISEASES = {"RA01": "COVID-19", "RA01.0": "COVID-19", "RA01.1": "COVID-19"}

#: ICAO 9303 document codes: the first letter says what kind of travel document it is.
_DOCUMENT_KINDS = {"P": "passport", "I": "id_card", "A": "id_card", "C": "id_card",
                   "V": "visa"}

#: VDS-NC test result values (``tr.r``) the canonical record can say; "normal" and "abnormal"
#: (also in the VDS-NC value set) do not say whether the person is infected, so they are kept
#: as issued with the result ``unknown``, which no acceptance rule takes for negative.
_RESULTS = {"negative": "negative", "positive": "positive", "inconclusive": "inconclusive",
            "indeterminate": "inconclusive"}

#: How many distinct signer certificates the adapter keeps parsed. Real deployments see a few
#: hundred DSCs; the bound keeps a flood of made-up certificates from growing memory.
_SIGNER_CACHE_SIZE = 512


@dataclass
class _Signer:
    """A DSC read once and remembered: parsing and extension reading cost far more than a
    signature check, and the same few DSCs sign almost every seal."""

    cert: Certificate
    key_id: str
    #: ICAO document-type categories ("NV", "NT", ...); ``None`` when the extension is absent
    document_types: frozenset | None
    #: False when a key usage extension is present without digitalSignature
    may_sign: bool
    #: CSCA DER -> whether that CSCA's key verifies this DSC's signature (pure, so cacheable
    #: whatever the trust store holds)
    issued_by: dict = field(default_factory=dict)
    #: whether ``sig.cer`` was written in standard base64 (reported on every seal)
    standard_base64: bool = False


class ICAOVDSAdapter(MappingAdapter):
    """Reads and verifies ICAO VDS-NC vaccination and test seals into canonical records."""

    scheme = "icao-vds"
    can_encode = False

    def __init__(self):
        self._signers: dict[str, _Signer] = {}
        self._lock = threading.Lock()

    # -- detection ----------------------------------------------------------------------------

    def detect(self, text) -> bool:
        """A VDS-NC seal is JSON with a ``data.hdr.t`` of ``icao.vacc``/``icao.test`` and a
        ``sig``; the substring test spares parsing for the common case of another scheme."""
        if not isinstance(text, str) or len(text) > MAX_CODE_LENGTH:
            return False
        if "icao." not in text or '"sig"' not in text or not text.lstrip().startswith(("{", "[")):
            return False
        try:
            seal = _unwrap(json.loads(text))
            return seal["data"]["hdr"]["t"] in SEAL_TYPES and isinstance(seal["sig"], dict)
        except Exception:  # anything unparseable simply is not ours
            return False

    # -- decoding -----------------------------------------------------------------------------

    def decode(self, text, *, trust, at: datetime | None = None) -> Decoded:
        """Parse, verify and map a seal; every failure is a :class:`CodeError`."""
        try:
            return self._decode(text, trust, at)
        except CodeError:
            raise
        except Exception as exc:  # scanned input is hostile: never leak another type
            raise CodeError("malformed", f"unreadable VDS-NC seal: {type(exc).__name__}") \
                from None

    def _decode(self, text, trust, at: datetime | None) -> Decoded:
        text = check_size(text)
        warnings = Warnings()
        seal, exact_numbers = _parse(text)
        data, sig = _shape(seal, warnings)
        signer = self._signer(sig["cer"], warnings)
        chain, csca = self._chain(signer, trust)
        _verify_seal(data, sig, signer.cert.public_key, exact_numbers, warnings)
        _check_usage(signer, data["hdr"]["t"])
        _check_validity(signer.cert, at or utcnow())  # (revocation: in _chain, checked first)
        record = _to_record(data, signer, warnings)
        details = {"type": data["hdr"]["t"], "version": data["hdr"]["v"],
                   "signer": signer.cert.subject, "chain": chain}
        if csca is not None:
            details["csca"] = csca.subject
        return Decoded(record=record, scheme=self.scheme, issuer=data["hdr"]["is"],
                       kid=signer.key_id, details=details, warnings=warnings.as_tuple())

    # -- signer certificates ------------------------------------------------------------------

    def _signer(self, cer: str, warnings: Warnings) -> _Signer:
        """The DSC named by ``sig.cer``, parsed once per distinct certificate text."""
        signer = self._signers.get(cer)
        if signer is not None:
            if signer.standard_base64:
                _note_base64(cer, "sig.cer", warnings)
            return signer
        _note_base64(cer, "sig.cer", warnings)
        der = _b64url(cer, "sig.cer")
        try:
            cert = load_certificate(der)
            document_types, may_sign = _read_extensions(der)
        except Exception:
            # load_certificate promises ValueError, but corrupted DER also surfaces as
            # cryptography's UnsupportedAlgorithm and pyasn1's PyAsn1Error, KeyError, ...
            raise CodeError("malformed", "sig.cer is not a readable X.509 certificate") from None
        signer = _Signer(cert=cert, key_id=hashlib.sha256(der).hexdigest(),
                         document_types=document_types, may_sign=may_sign,
                         standard_base64="+" in cer or "/" in cer)
        with self._lock:
            if len(self._signers) >= _SIGNER_CACHE_SIZE:
                # drop the oldest entry: dicts keep insertion order
                self._signers.pop(next(iter(self._signers)), None)
            self._signers[cer] = signer
        return signer

    def _chain(self, signer: _Signer, trust):
        """How the DSC is trusted: ``("direct", None)`` or ``("csca", csca)``.

        Trust is looked up afresh on every decode (cheap dictionary lookups) rather than cached,
        so a certificate added to or dropped from the trust store counts at once; only the
        expensive CSCA signature check is remembered, per (DSC, CSCA) pair.
        """
        if trust.is_certificate_revoked(signer.cert):
            # its CSCA's CRL lists it (Doc 9303-12 7.1.4; imported with `trust import`)
            raise CodeError("revoked", "the seal's signer certificate is revoked by its CSCA")
        if trust.certificate(signer.cert.der, scheme="icao-vds") is not None:
            return "direct", None
        for csca in _issuer_candidates(signer.cert, trust):
            if _may_issue(csca, signer.cert) and self._issued_by(signer, csca):
                return "csca", csca
        raise CodeError("unknown_key", f"no trusted certificate or CSCA for the signer "
                                       f"{signer.cert.subject!r}")

    def _issued_by(self, signer: _Signer, csca: Certificate) -> bool:
        known = signer.issued_by.get(csca.der)
        if known is None:
            known = _csca_signed(signer.cert, csca)
            signer.issued_by[csca.der] = known
        return known


# -- parsing and shape --------------------------------------------------------------------------


def _parse(text: str):
    """The seal, and whether every number in it is an integer (see :func:`canonical_json`)."""
    floats = []
    try:
        seal = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants,
                          parse_int=_safe_int,
                          parse_float=lambda token: floats.append(token) or float(token))
    except CodeError:
        raise
    except (ValueError, RecursionError):
        raise CodeError("malformed", "the seal is not JSON") from None
    return _unwrap(seal), not floats


def _safe_int(token: str) -> int:
    """Integers beyond 2**53 have no exact RFC 8785 form (JCS numbers are IEEE doubles), so
    a seal holding one cannot have been signed as written."""
    value = int(token)
    if abs(value) > _MAX_SAFE_INTEGER:
        raise CodeError("malformed", "an integer beyond the range RFC 8785 can represent")
    return value


def _no_duplicates(pairs):
    """Refuse repeated member names: the signature covers a re-canonicalised form, and two
    parsers keeping different duplicates would verify one value and display another."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise CodeError("malformed", "a JSON object repeats a member name")
    return obj


def _no_constants(name):
    """NaN and Infinity are not JSON and have no canonical form."""
    raise CodeError("malformed", f"{name} is not a JSON value")


def _unwrap(value):
    """Some issuers (JPN) ship the seal as a one-element array."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _shape(seal, warnings: Warnings):
    """Check the members the verifier and the mapping rely on; return ``(data, sig)``."""
    if not isinstance(seal, dict):
        raise CodeError("malformed", "the seal is not a JSON object")
    data, sig = seal.get("data"), seal.get("sig")
    if not isinstance(data, dict) or not isinstance(sig, dict):
        raise CodeError("malformed", "the seal needs 'data' and 'sig' objects")
    hdr, msg = data.get("hdr"), data.get("msg")
    if not isinstance(hdr, dict) or not isinstance(msg, dict):
        raise CodeError("malformed", "data needs 'hdr' and 'msg' objects")
    if hdr.get("t") not in SEAL_TYPES:
        raise CodeError("unsupported_scheme", f"not a VDS-NC health seal type: {hdr.get('t')!r}")
    version = hdr.get("v")
    if version == "1":
        warnings.add("vds_version_text", "hdr.v is written as text")
    elif version != 1 or isinstance(version, bool):
        raise CodeError("unsupported_scheme", f"unsupported VDS-NC version {version!r}")
    if not _text(hdr.get("is")):
        raise CodeError("malformed", "hdr.is (issuing country) is required")
    for name in ("alg", "cer", "sigvl"):
        if not _text(sig.get(name)):
            raise CodeError("malformed", f"sig.{name} is required")
    return data, sig


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _b64url(value: str, what: str) -> bytes:
    """base64url with or without padding (seals in the wild do both), or standard base64
    (:func:`_note_base64` reports it), line-wrapped or not; any other character is refused."""
    if "\n" in value or " " in value or "\r" in value or "\t" in value:
        value = "".join(value.split())
    stripped = value.rstrip("=")
    try:
        return base64.b64decode(stripped.translate(_URLSAFE_TO_STANDARD)
                                + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CodeError("malformed", f"{what} is not base64url") from None


_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def _note_base64(value: str, what: str, warnings: Warnings) -> None:
    if "+" in value or "/" in value:
        warnings.add("vds_base64_standard", f"{what} is standard base64, not base64url")


# -- signatures ---------------------------------------------------------------------------------


def canonical_json(value, *, exact_numbers: bool = False) -> bytes:
    """The RFC 8785 (JCS) bytes of a parsed JSON value.

    The rfc8785 package is pure Python and costs as much as the signature check itself, so
    when the caller vouches that every number is an integer within +-(2**53 - 1)
    (``exact_numbers``) the C JSON encoder does the work: for such values, and output that is
    all ASCII, its sorted compact form is byte for byte the JCS form (same escapes, lowercase
    ``\\u00xx`` for control characters, keys ordered alike because ASCII code points and UTF-16
    code units coincide). Anything else (floats, which need ECMAScript number formatting;
    non-ASCII text, where sort orders can differ beyond the BMP) goes to rfc8785.

    :raises rfc8785.CanonicalizationError: for numbers JCS cannot represent
    """
    if exact_numbers:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                          allow_nan=False)
        if text.isascii():
            return text.encode("ascii")
    return rfc8785.dumps(value)


def _verify_seal(data: dict, sig: dict, public_key, exact_numbers: bool = False,
                 warnings: Warnings | None = None) -> None:
    """ECDSA over JCS(data): the hash ``alg`` names (allow-list), the curve of the DSC's own
    key, ``r||s`` of that curve's size (module docstring)."""
    spec = _ALGORITHMS.get(sig["alg"])
    if spec is None:
        raise CodeError("bad_signature", f"signature algorithm {sig['alg']!r} is not allowed")
    ecdsa, usual_curve = spec
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CodeError("bad_signature", f"the signer's key cannot make {sig['alg']} signatures")
    curve = public_key.curve
    size = (curve.key_size + 7) // 8
    warnings = Warnings() if warnings is None else warnings
    if curve.name != usual_curve:
        warnings.add("vds_alg_curve_mismatch", f"signed {sig['alg']} with a {curve.name} key")
    _note_base64(sig["sigvl"], "sig.sigvl", warnings)
    raw = _b64url(sig["sigvl"], "sig.sigvl")
    if len(raw) != 2 * size:
        raise CodeError("bad_signature", f"a {sig['alg']} signature is {2 * size} bytes")
    try:
        message = canonical_json(data, exact_numbers=exact_numbers)
    except rfc8785.CanonicalizationError:
        # numbers JCS cannot represent exactly cannot have been signed in canonical form
        raise CodeError("malformed", "data has no RFC 8785 canonical form") from None
    der = encode_dss_signature(int.from_bytes(raw[:size], "big"),
                               int.from_bytes(raw[size:], "big"))
    try:
        public_key.verify(der, message, ecdsa)
    except InvalidSignature:
        raise CodeError("bad_signature", "the seal signature does not verify") from None


def _issuer_candidates(dsc: Certificate, trust):
    """Trusted certificates whose subject is the DSC's issuer.

    First by the subject text (an indexed lookup); then, for certificates whose names were
    rendered by different parsers (cryptography and the tolerant pyasn1 reader spell unusual
    attributes differently), by the encoded Name bytes.
    """
    tried = []
    for csca in trust.certificates_by_subject(dsc.issuer, scheme="icao-vds"):
        tried.append(csca.der)
        yield csca
    issuer = _names(dsc.der)[0]
    for csca in trust.certificates(scheme="icao-vds"):
        if csca.der not in tried and csca.der != dsc.der and _names(csca.der)[1] == issuer:
            yield csca


@functools.lru_cache(maxsize=1024)
def _names(der: bytes) -> tuple[bytes, bytes]:
    """The encoded issuer and subject Names of a certificate (empty when unreadable)."""
    try:
        tbs = _certificate_parts(der)[0]
        _, offset, end = _tlv(tbs, 0)
        fields = []
        while offset < end:
            tag, _, field_end = _tlv(tbs, offset)
            if tag != 0xA0:  # skip the explicit [0] version
                fields.append(tbs[offset:field_end])
            offset = field_end
        # serialNumber, signature, issuer, validity, subject, ...
        return fields[2], fields[4]
    except (ValueError, IndexError):
        return b"", b"\x00"


def _may_issue(csca: Certificate, dsc: Certificate) -> bool:
    """Whether ``csca`` could have issued ``dsc``: it was valid when the DSC's validity began
    (chain model, see the module docstring) and, where it says so, it is a CA allowed to sign
    certificates. A trusted end-entity certificate that happens to carry the right subject
    must not become an issuer."""
    if not csca.not_before <= dsc.not_before <= csca.not_after:
        return False
    if csca.parsed is None:
        return True
    try:
        extensions = csca.parsed.extensions
    except ValueError:
        return True  # unreadable extension block: the trust store still vouches for it
    for ext in extensions:
        if isinstance(ext.value, x509.BasicConstraints) and not ext.value.ca:
            return False
        if isinstance(ext.value, x509.KeyUsage) and not ext.value.key_cert_sign:
            return False
    return True


def _csca_signed(dsc: Certificate, csca: Certificate) -> bool:
    """Whether ``csca``'s key signed ``dsc``. cryptography does it when it can read both
    certificates; otherwise (odd encodings, explicit curve parameters) the signature is
    checked over the DSC's raw TBS bytes."""
    if dsc.parsed is not None and csca.parsed is not None:
        try:
            dsc.parsed.verify_directly_issued_by(csca.parsed)
            return True
        except InvalidSignature:
            return False
        except Exception:  # unsupported algorithm or name mismatch wording: try the raw check
            pass
    try:
        return verify_issued_by_raw(dsc.der, csca.public_key)
    except Exception:  # an unreadable certificate cannot vouch for anything
        return False


_SIGNATURE_HASHES = {
    "1.2.840.10045.4.3.2": ("ecdsa", hashes.SHA256),
    "1.2.840.10045.4.3.3": ("ecdsa", hashes.SHA384),
    "1.2.840.10045.4.3.4": ("ecdsa", hashes.SHA512),
    "1.2.840.113549.1.1.11": ("pkcs1", hashes.SHA256),
    "1.2.840.113549.1.1.12": ("pkcs1", hashes.SHA384),
    "1.2.840.113549.1.1.13": ("pkcs1", hashes.SHA512),
    "1.2.840.113549.1.1.10": ("pss", None),
}
_HASH_OIDS = {"2.16.840.1.101.3.4.2.1": hashes.SHA256, "2.16.840.1.101.3.4.2.2": hashes.SHA384,
              "2.16.840.1.101.3.4.2.3": hashes.SHA512}


def verify_issued_by_raw(cert_der: bytes, issuer_public_key) -> bool:
    """Check a certificate's signature over its exact TBS bytes with ``issuer_public_key``.

    The TBS bytes are cut out of the DER as transmitted, never re-encoded: a re-encoding would
    differ from the signed bytes wherever the issuer did not use strict DER.

    :raises ValueError: when the certificate or its signature algorithm cannot be read
    """
    from pyasn1.codec.ber import decoder
    from pyasn1_modules import rfc5280

    tbs, alg_der, sig_der = _certificate_parts(cert_der)
    alg, _ = decoder.decode(alg_der, asn1Spec=rfc5280.AlgorithmIdentifier())
    signature, _ = decoder.decode(sig_der)
    signature = signature.asOctets()
    kind, hash_cls = _SIGNATURE_HASHES.get(str(alg["algorithm"]), (None, None))
    try:
        if kind == "ecdsa" and isinstance(issuer_public_key, ec.EllipticCurvePublicKey):
            issuer_public_key.verify(signature, tbs, ec.ECDSA(hash_cls()))
        elif kind == "pkcs1" and isinstance(issuer_public_key, rsa.RSAPublicKey):
            issuer_public_key.verify(signature, tbs, padding.PKCS1v15(), hash_cls())
        elif kind == "pss" and isinstance(issuer_public_key, rsa.RSAPublicKey):
            hash_cls, salt = _pss_parameters(alg["parameters"])
            issuer_public_key.verify(signature, tbs, padding.PSS(padding.MGF1(hash_cls()), salt),
                                     hash_cls())
        else:
            raise ValueError(f"unsupported certificate signature algorithm {alg['algorithm']}")
    except InvalidSignature:
        return False
    return True


def _pss_parameters(parameters):
    """Hash and salt length of RSASSA-PSS parameters (RFC 4055 defaults: SHA-1, 20)."""
    from pyasn1.codec.ber import decoder
    from pyasn1_modules import rfc4055

    params, _ = decoder.decode(bytes(parameters), asn1Spec=rfc4055.RSASSA_PSS_params())
    hash_cls = _HASH_OIDS.get(str(params["hashAlgorithm"]["algorithm"])) \
        if params["hashAlgorithm"].isValue else None
    if hash_cls is None:
        # SHA-1 (the default) is not acceptable for a certificate signature today
        raise ValueError("unsupported RSASSA-PSS hash")
    salt = int(params["saltLength"]) if params["saltLength"].isValue else 20
    return hash_cls, salt


def _certificate_parts(der: bytes) -> tuple[bytes, bytes, bytes]:
    """The three elements of Certificate ::= SEQUENCE {tbs, signatureAlgorithm, signature},
    each as its exact encoded bytes (tag and length included)."""
    tag, start, end = _tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("not a certificate SEQUENCE")
    parts = []
    offset = start
    while offset < end:
        _, value_start, value_end = _tlv(der, offset)
        parts.append(der[offset:value_end])
        offset = value_end
    if len(parts) != 3:
        raise ValueError("a certificate has three elements")
    return parts[0], parts[1], parts[2]


def _tlv(der: bytes, offset: int) -> tuple[int, int, int]:
    """Tag, start of value and end of one DER element at ``offset`` (definite lengths only)."""
    if offset + 2 > len(der):
        raise ValueError("truncated DER")
    tag, length = der[offset], der[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or offset + count > len(der):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[offset:offset + count], "big")
        offset += count
    if offset + length > len(der):
        raise ValueError("truncated DER")
    return tag, offset, offset + length


# -- certificate policy -------------------------------------------------------------------------


def _read_extensions(der: bytes) -> tuple[frozenset | None, bool]:
    """The ICAO document-type list and whether key usage allows signing.

    Read with pyasn1 because cryptography does not know the ICAO extension and refuses some
    real DSCs outright. An extension that is present but unreadable grants nothing (fail closed).
    """
    from pyasn1.codec.ber import decoder
    from pyasn1_modules import rfc5280

    cert, _ = decoder.decode(der, asn1Spec=rfc5280.Certificate())
    extensions = cert["tbsCertificate"]["extensions"]
    document_types, may_sign = None, True
    if not extensions.isValue:
        return document_types, may_sign
    for ext in extensions:
        oid, value = str(ext["extnID"]), bytes(ext["extnValue"])
        if oid == _DOCUMENT_TYPE_EXTENSION:
            document_types = _document_types(value)
        elif oid == _KEY_USAGE_EXTENSION:
            may_sign = _allows_digital_signature(value)
    return document_types, may_sign


def _document_types(value: bytes) -> frozenset:
    """DocumentTypeList ::= SEQUENCE { version INTEGER, docTypeList SET OF PrintableString }."""
    from pyasn1.codec.ber import decoder

    try:
        seq, _ = decoder.decode(value)
        return frozenset(str(item) for item in seq[1])
    except Exception:
        return frozenset()


def _allows_digital_signature(value: bytes) -> bool:
    from pyasn1.codec.ber import decoder
    from pyasn1_modules import rfc5280

    try:
        bits, _ = decoder.decode(value, asn1Spec=rfc5280.KeyUsage())
        return len(bits) > 0 and bits[0] == 1
    except Exception:
        return False


def _check_usage(signer: _Signer, seal_type: str) -> None:
    eku = signer.cert.extended_key_usage
    if eku and VDS_NC_SIGNER_EKU not in eku and _ANY_EKU not in eku:
        raise CodeError("wrong_key_usage", "the signer certificate is not a VDS-NC signer")
    wanted = SEAL_TYPES[seal_type]
    if signer.document_types is not None and wanted not in signer.document_types:
        raise CodeError("wrong_key_usage", f"the signer certificate may not sign {seal_type} "
                                           f"seals (document type {wanted})")
    if not signer.may_sign:
        raise CodeError("wrong_key_usage", "the signer certificate's key usage forbids signing")


def _check_validity(cert: Certificate, at: datetime) -> None:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    if at < cert.not_before:
        raise CodeError("not_yet_valid", f"the signer certificate is valid from "
                                         f"{cert.not_before.isoformat()}")
    if at > cert.not_after:
        raise CodeError("expired", f"the signer certificate expired at "
                                   f"{cert.not_after.isoformat()}")


# -- mapping onto the canonical record ----------------------------------------------------------


def _to_record(data: dict, signer: _Signer, warnings: Warnings | None = None) -> Record:
    """Map a verified seal; a seal that breaks the record's rules is malformed."""
    warnings = Warnings() if warnings is None else warnings
    hdr, msg = data["hdr"], data["msg"]
    try:
        subject = _subject(_member(msg, "pid", dict), hdr["is"], warnings)
        if hdr["t"] == "icao.vacc":
            evidence = Evidence(vaccinations=_vaccinations(msg, warnings))
            issued_at = None
        else:
            test, issued_at = _test(msg, warnings)
            evidence = Evidence(tests=(test,))
        provenance = Provenance(scheme="icao-vds", issuer=hdr["is"],
                                source_id=_identifier(msg, hdr["t"], warnings),
                                issued_at=issued_at, key_id=signer.key_id)
        return Record(subject=subject, evidence=evidence, provenance=provenance)
    except HealthCodeError as exc:
        if isinstance(exc, CodeError):
            raise
        raise CodeError("malformed", f"the seal does not map to a record: {exc.message}") \
            from None


#: The certificate identifier's member name per seal type, and the names seen instead.
_IDENTIFIERS = {"icao.vacc": ("uvci", ("ucl", "utci")), "icao.test": ("utci", ("ucl", "uvci"))}


def _identifier(msg: dict, seal_type: str, warnings: Warnings) -> str | None:
    name, others = _IDENTIFIERS[seal_type]
    value = _optional_text(msg, name)
    if value is None:
        for other in others:
            value = _optional_text(msg, other)
            if value is not None:
                warnings.add("vds_identifier_name", f"the certificate identifier is {other}, "
                                                    f"not {name}")
                break
    return value


def _member(obj: dict, name: str, kind: type, required: bool = True):
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CodeError("malformed", f"{name} must be a {kind.__name__}")
    return value


def _optional_text(obj: dict, name: str) -> str | None:
    return _member(obj, name, str, required=False) or None


def _list_of(obj: dict, name: str, warnings: Warnings) -> list:
    """A member the TR makes a list of objects; one object alone is read as a list of one."""
    value = obj.get(name)
    if value.__class__ is list:
        return value
    if isinstance(value, dict):
        warnings.add("vds_shape", f"{name} is an object, not a list")
        return [value]
    return _member(obj, name, list)


_MRZ_NAME = re.compile(r"[A-Za-z][A-Za-z '\-]*")


def _subject(pid: dict, country: str, warnings: Warnings) -> Subject:
    """``n`` follows the MRZ: primary and secondary identifiers separated by two spaces
    ("CITIZEN  JANE SUE"), or by the MRZ filler ``<<`` in some seals ("CITIZEN<<JANE<SUE").
    With a single space the split is unknowable ("Smith Bill" could be either order), so the
    name is kept whole. The name is the issuer's ICAO 9303 transliteration, so it is also the
    record's Latin name when it is written in Latin letters."""
    name = _member(pid, "n", str)
    if "<" in name:
        warnings.add("vds_name_mrz_fillers", "pid.n uses the MRZ filler < for spaces")
        name = name.replace("<<", "  ").replace("<", " ")
    family, sep, given = name.strip().partition("  ")
    if sep:
        family, given = family.strip(), " ".join(given.split()) or None
        whole = f"{given} {family}" if given else family  # as Subject would join Latin parts
    else:
        whole, family, given = " ".join(name.split()), None, None
    latin = _MRZ_NAME.fullmatch(name.strip()) is not None  # Latin letters: the transliteration
    return Subject(name=whole, family_name=family, given_name=given,
                   name_latin=whole if latin else None,
                   family_name_latin=family if latin else None,
                   given_name_latin=given if latin else None,
                   birth_date=read_date(pid.get("dob"), "pid.dob", warnings),
                   document=_document(pid, country))


def _document(pid: dict, country: str) -> Document | None:
    """Proof-of-vaccination seals carry the passport number as ``i``; proof-of-test seals a
    document type ``dt`` and number ``dn``. VDS-NC does not say which state issued the
    document, so the seal's issuing country stands in for it."""
    number = _optional_text(pid, "i")
    kind = "passport"
    if number is None:
        number = _optional_text(pid, "dn")
        code = (_optional_text(pid, "dt") or "P").strip().upper()[:1]
        kind = _DOCUMENT_KINDS.get(code, "travel_document")
    if not number or not number.strip():
        return None
    return Document(type=kind, number=number, region=country)


def _vaccinations(msg: dict, warnings: Warnings) -> tuple[Vaccination, ...]:
    doses = []
    for event in _list_of(msg, "ve", warnings):
        event = _object(event, "ve[]")
        product = _optional_text(event, "nam") or _optional_text(event, "des")
        if product is None:
            raise CodeError("malformed", "ve[].nam must be a str")
        vaccine_type = _optional_text(event, "des")
        disease = _disease(_optional_text(event, "dis"))
        for dose in _list_of(event, "vd", warnings):
            dose = _object(dose, "vd[]")
            doses.append(Vaccination(
                product=product, vaccine_type=vaccine_type, disease=disease,
                dose_number=_dose_number(dose.get("seq"), len(doses) + 1, warnings),
                administered_on=read_date(dose.get("dvc"), "vd.dvc", warnings, required=True),
                country=_optional_text(dose, "ctr"), lot=_optional_text(dose, "lot")))
    if not doses:
        raise CodeError("malformed", "a vaccination seal without doses")
    return tuple(doses)


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise CodeError("malformed", f"{what} must be an object")
    return value


def _dose_number(value, position: int, warnings: Warnings) -> int:
    """``seq`` is an integer in the specification; a string in some real seals ("1"); when
    absent, the dose's position among the seal's doses."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if value is None:
        warnings.add("vds_shape", "vd.seq is absent; the dose's position is used")
        return position
    if isinstance(value, str) and value.strip().isdigit() and value.isascii():
        warnings.add("vds_shape", "vd.seq is written as text")
        return int(value)
    raise CodeError("malformed", f"vd.seq is not a dose number: {str(value)[:8]!r}")


def _disease(code: str | None) -> str:
    if code is None:
        return "COVID-19"
    return _DISEASES.get(code.strip().upper(), code)


def _test(msg: dict, warnings: Warnings) -> tuple[TestResult, object]:
    """The single test result of a proof-of-test seal and its report issuance time."""
    tr = _member(msg, "tr", dict)
    dat = _member(msg, "dat", dict)
    sp = _member(msg, "sp", dict, required=False) or {}
    kind = _member(tr, "tc", str)
    raw_result = _member(tr, "r", str)
    result = _RESULTS.get(raw_result.strip().lower())
    if result is None:
        warnings.add("value_outside_value_set", f"tr.r {raw_result[:16]!r} does not say "
                                                f"positive or negative; kept as issued")
    test_type = _test_type(kind)
    if test_type == "other":
        warnings.add("value_outside_value_set", f"tr.tc {kind[:24]!r} is not a test type this "
                                                f"service knows; kept as issued")
    test = TestResult(type=test_type, result=result or "unknown",
                      result_code=None if result else raw_result[:64],
                      sampled_at=read_date_time(dat.get("sc"), "dat.sc", warnings), name=kind,
                      centre=_optional_text(sp, "spn"), country=_optional_text(sp, "ctr"))
    report = dat.get("ri")
    return test, None if report is None else read_date_time(report, "dat.ri", warnings)


def _test_type(tc: str) -> str:
    """VDS-NC test types: molecular(PCR), molecular(other), antigen, antibody."""
    kind = tc.strip().lower()
    if "pcr" in kind:
        return "pcr"
    if "antigen" in kind:
        return "rat"
    if "antibod" in kind:
        return "antibody"
    return "other"
