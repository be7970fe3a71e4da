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
"""
from __future__ import annotations

import base64
import functools
import re
import secrets
import threading
import time
import unicodedata
import weakref
import zlib
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import base45
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                              encode_dss_signature)

from healthcode.certs import Certificate, load_certificate
from healthcode.errors import ConfigurationError, HealthCodeError
from healthcode.record import (Evidence, Provenance, Record, Recovery, Subject, TestResult,
                               Vaccination, format_time)

from .b45 import b45decode as _b45decode
from .base import CodeError, Decoded, MappingAdapter, Signer, Warnings, check_size, utcnow
from .dates import read_date, read_date_time

__all__ = [
    "EUDCCAdapter", "CoseSign1", "Claims", "Verified", "PREFIX", "MAX_INFLATED",
    "unprefix", "b45decode", "decompress", "parse_cose", "sig_structure", "verify_signature",
    "read_claims", "certificate_type", "check_validity", "check_key_usage", "to_record",
    "icao_transliterate", "uvci", "luhn_mod_n",
]

PREFIX = "HC1:"
#: Cap on the inflated COSE message (see the module docstring).
MAX_INFLATED = 64 * 1024
#: CBOR nesting a DCC needs is about 6; a deep structure is hostile, not a certificate.
MAX_CBOR_DEPTH = 32

ALG_ES256 = -7
ALG_ES384 = -35
ALG_ES512 = -36
ALG_PS256 = -37
HEADER_ALG = 1
HEADER_KID = 4
CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_HCERT = -260
TAG_CWT = 61
TAG_COSE_SIGN1 = 18
#: The tag chains a COSE_Sign1 arrives in: untagged, tag 18, or tag 18 inside CWT tag 61.
_TAG_CHAINS = frozenset({(), (TAG_COSE_SIGN1,), (TAG_CWT, TAG_COSE_SIGN1)})
#: ... and one that real encoders produced: CWT tag 61 straight around an untagged message.
_TAG_CHAIN_CWT_ONLY = (TAG_CWT,)

SCHEMA_VERSION = "1.3.0"
DISEASE_COVID = "840539006"
TEST_TYPE_CODES = {"LP6464-4": "pcr", "LP217198-3": "rat"}
TEST_RESULT_CODES = {"260415000": "negative", "260373001": "positive"}
TYPE_KEYS = {"v": "vaccination", "t": "test", "r": "recovery"}

#: Extended key usage OIDs that allow a DSC to sign one certificate type. The ``.0.1847``
#: variant is a typo that shipped in many national DSCs and is accepted everywhere.
KEY_USAGE_OIDS = {
    "test": frozenset({"1.3.6.1.4.1.1847.2021.1.1", "1.3.6.1.4.1.0.1847.2021.1.1"}),
    "vaccination": frozenset({"1.3.6.1.4.1.1847.2021.1.2", "1.3.6.1.4.1.0.1847.2021.1.2"}),
    "recovery": frozenset({"1.3.6.1.4.1.1847.2021.1.3", "1.3.6.1.4.1.0.1847.2021.1.3"}),
}

#: What cbor2 decodes a CBOR map to (maps inside tags come out frozen). A tuple of concrete
#: types, because isinstance against the Mapping ABC costs several times more per check.
_MAPS = (dict, cbor2.frozendict)

# Built once: these objects are immutable and cost a few microseconds each per verification.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_SHA256 = hashes.SHA256()
_PSS_32 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
#: COSE ECDSA algorithm -> the hash it names, and the curve the hcert/COSE registry pairs it with
_ECDSA = {ALG_ES256: (_ECDSA_SHA256, "secp256r1"),
          ALG_ES384: (ec.ECDSA(hashes.SHA384()), "secp384r1"),
          ALG_ES512: (ec.ECDSA(hashes.SHA512()), "secp521r1")}
_COSE_ALG_NAMES = {ALG_ES256: "ES256", ALG_ES384: "ES384", ALG_ES512: "ES512",
                   ALG_PS256: "PS256"}


def _error(reason: str, step: str, message: str) -> CodeError:
    """A CodeError that names the link of the chain that broke (shown in traces and tests)."""
    return CodeError(reason, message, step=step)


# -- the decoding chain, one step per function ---------------------------------------------


def unprefix(text: str) -> str:
    """Strip the ``HC1:`` context prefix; any other (``HC2:``, ``HL0:``) or none is refused."""
    text = text.strip()
    if text.startswith(PREFIX):
        return text[len(PREFIX):]
    found = re.match(r"^([A-Z0-9]{2,4}):", text)
    if found:
        raise _error("malformed", "prefix",
                     f"unsupported context prefix {found.group(1)}: (expected {PREFIX})")
    raise _error("malformed", "prefix", f"the code does not start with {PREFIX}")


def b45decode(text: str) -> bytes:
    """Base45 (RFC 9285) to bytes (:mod:`mapping.b45`: what the ``base45`` package accepts,
    several times faster)."""
    try:
        return _b45decode(text)
    except Exception:  # ValueError, but input is hostile: catch all
        raise _error("malformed", "base45", "not valid base45") from None


def decompress(data: bytes, limit: int = MAX_INFLATED) -> bytes:
    """Inflate a zlib stream, refusing more than ``limit`` bytes of output (bomb guard)."""
    # A zlib stream starts with CMF/FLG: deflate (CM=8) and a header checksum divisible by 31.
    if len(data) < 2 or data[0] & 0x0F != 8 or ((data[0] << 8) | data[1]) % 31:
        raise _error("malformed", "zlib", "the code is not zlib-compressed")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit)
    except zlib.error:
        raise _error("malformed", "zlib", "broken zlib data") from None
    if inflater.unconsumed_tail:
        raise _error("too_large", "zlib", f"the code inflates to more than {limit} bytes")
    if not inflater.eof:
        raise _error("malformed", "zlib", "truncated zlib data")
    if inflater.unused_data:
        raise _error("malformed", "zlib", "data after the end of the zlib stream")
    return out


def _cbor_loads(data: bytes, step: str, what: str):
    """Decode one CBOR item; any failure of the decoder is ``malformed`` at ``step``.

    Bytes after the item are ignored (cbor2 does). They are never signed and never read, so
    they add nothing to what an attacker can already do with the unprotected header; refusing
    them needs a stream decoder that costs ~3 µs per scan in situ.
    """
    try:
        return cbor2.loads(data, max_depth=MAX_CBOR_DEPTH)
    except Exception:  # CBORDecodeError, but also RecursionError, MemoryError, ...
        raise _error("malformed", step, f"the {what} is not valid CBOR") from None


class CoseSign1(NamedTuple):
    """A parsed COSE_Sign1 message: what the signature covers and who signed it.

    The step results are NamedTuples rather than frozen dataclasses: as immutable, and built
    several times faster, which counts on a path that runs once per scan.
    """

    protected: bytes  # the protected header as signed (may be empty)
    payload: bytes
    signature: bytes
    alg: int
    kid: bytes
    tags: tuple[int, ...] = ()
    #: deviations from the letter of COSE/hcert seen while parsing: ``(code, message)`` pairs
    notes: tuple[tuple[str, str], ...] = ()


def _header(value, name: str) -> Mapping:
    if not isinstance(value, _MAPS):
        raise _error("malformed", "cose", f"the {name} header is not a map")
    return value


def parse_cose(data: bytes) -> CoseSign1:
    """A COSE_Sign1 message: tag 18, tag 18 inside CWT tag 61, or untagged."""
    message = _cbor_loads(data, "cose", "COSE message")
    tags = ()
    while isinstance(message, cbor2.CBORTag) and len(tags) < 2:
        tags += (message.tag,)
        message = message.value
    notes = []
    if tags == _TAG_CHAIN_CWT_ONLY:
        notes.append(("cose_untagged_in_cwt", "the COSE_Sign1 message inside CWT tag 61 lacks "
                                              "its own tag 18"))
    elif tags not in _TAG_CHAINS:
        raise _error("malformed", "cose", "not a COSE_Sign1 message (unexpected CBOR tag)")
    if not isinstance(message, (list, tuple)) or len(message) != 4:
        raise _error("malformed", "cose", "not a COSE_Sign1 message")
    protected_bstr, unprotected, payload, signature = message
    if isinstance(protected_bstr, _MAPS) and not protected_bstr:
        # An empty map where the bstr belongs: RFC 9052 says an empty protected header is
        # the zero-length bstr, which is what the signature then covers.
        notes.append(("cose_protected_not_bstr", "the empty protected header is a map, not a "
                                                 "byte string"))
        protected_bstr = b""
    if not (isinstance(protected_bstr, bytes) and isinstance(payload, bytes)
            and isinstance(signature, bytes)):
        raise _error("malformed", "cose", "not a COSE_Sign1 message (byte strings expected)")
    protected = _header(_cbor_loads(protected_bstr, "cose", "protected header")
                        if protected_bstr else {}, "protected")
    unprotected = _header(unprotected, "unprotected")
    alg = protected.get(HEADER_ALG)
    if alg is None:
        alg = unprotected.get(HEADER_ALG)
        if alg is not None:
            notes.append(("cose_alg_unprotected", "the algorithm is named in the unprotected "
                                                  "header only"))
    # The protected kid wins: it is covered by the signature, the unprotected one is not.
    kid = protected.get(HEADER_KID, unprotected.get(HEADER_KID))
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise _error("malformed", "cose", "the COSE message names no algorithm")
    if not isinstance(kid, bytes) or not kid:
        raise _error("malformed", "cose", "the COSE message names no key id")
    other = unprotected.get(HEADER_KID)
    if HEADER_KID in protected and isinstance(other, bytes) and other != kid:
        notes.append(("cose_kid_conflict", "the unprotected header names another kid; the "
                                           "protected one is used"))
    return CoseSign1(protected_bstr, payload, signature, alg, kid, tags, tuple(notes))


def sig_structure(cose: CoseSign1) -> bytes:
    """The bytes a COSE_Sign1 signature covers (RFC 9052 section 4.4)."""
    return cbor2.dumps(["Signature1", cose.protected, b"", cose.payload])


class _Key(NamedTuple):
    """A DSC prepared for verifying: its key family, curve and verify method.

    Prepared once per certificate (in the signer index), so a scan does not repeat the key-type
    checks, which go through ABC instance checks in ``cryptography``.
    """

    certificate: Certificate
    #: "ec", "rsa", or None for a key no DCC algorithm can use
    kind: str | None
    verify: object
    #: for EC keys: the curve name and the byte size of one of r and s
    curve: str | None = None
    size: int = 0


def _prepare(certificate: Certificate) -> _Key:
    key = certificate.public_key
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _Key(certificate, "ec", key.verify, key.curve.name, (key.curve.key_size + 7) // 8)
    if isinstance(key, rsa.RSAPublicKey):
        return _Key(certificate, "rsa", key.verify)
    return _Key(certificate, None, None)  # no algorithm a DCC may use: verifies nothing


def _verify(key: _Key, cose: CoseSign1, signed: bytes) -> bool:
    """The signature with the DSC's own key: ECDSA on that key's curve with the hash ``alg``
    names (the Corona-Warn-App's DscSignatureValidator), or PS256 for RSA (module docstring)."""
    signature = cose.signature
    try:
        if key.kind == "ec":
            ecdsa = _ECDSA.get(cose.alg)
            size = key.size
            if ecdsa is None or len(signature) != 2 * size:  # raw r||s of the curve's size
                return False
            key.verify(encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                            int.from_bytes(signature[size:], "big")),
                       signed, ecdsa[0])
        elif key.kind == "rsa" and cose.alg == ALG_PS256:
            key.verify(signature, signed, _PSS_32, _SHA256)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_signature(cose: CoseSign1, certificate: Certificate, signed: bytes | None = None
                     ) -> bool:
    """Whether ``certificate``'s key made ``cose``'s signature (see :func:`_verify`)."""
    return _verify(_prepare(certificate), cose, sig_structure(cose) if signed is None else signed)


def algorithm_notes(cose: CoseSign1, certificate: Certificate) -> tuple[tuple[str, str], ...]:
    """Warnings about a verified signature's algorithm: anything but ES256 on P-256 or PS256
    strays from the hcert specification's primary and secondary algorithms."""
    key = certificate.public_key
    name = _COSE_ALG_NAMES.get(cose.alg, str(cose.alg))
    if isinstance(key, ec.EllipticCurvePublicKey):
        if cose.alg == ALG_ES256 and key.curve.name == "secp256r1":
            return ()
        if _ECDSA[cose.alg][1] != key.curve.name:
            return (("cose_alg_curve_mismatch", f"signed {name} with a {key.curve.name} key "
                                                f"(verified with the key's own curve)"),)
        return (("cose_alg_not_hcert", f"signed {name}; the hcert specification names ES256 "
                                       f"and PS256"),)
    return ()


class Claims(NamedTuple):
    """The CWT claims of a DCC: issuing country, issued-at (None when the CWT has none) and
    expiry (UTC), the payload, and deviations noticed reading them."""

    issuer: str | None
    issued_at: datetime | None
    expires: datetime
    dcc: Mapping
    notes: tuple[tuple[str, str], ...] = ()


_LAST_INSTANT = 253402300799  # 9999-12-31T23:59:59Z
_FIRST_INSTANT = -62135596800  # 0001-01-01T00:00:00Z


def _instant(value, name: str, notes: list):
    """A NumericDate (RFC 8392: an int or float, no tag) as POSIX seconds."""
    if isinstance(value, datetime):  # CBOR tag 0/1, which RFC 8392 says must be omitted
        notes.append(("cwt_time_tagged", f"the {name} claim is a tagged CBOR date"))
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise _error("malformed", "claims", f"the CWT has no numeric {name} claim")
    if value > _LAST_INSTANT:
        notes.append(("cwt_time_out_of_range", f"the {name} claim lies beyond year 9999"))
        return _LAST_INSTANT
    if value < 0:
        if value < _FIRST_INSTANT:  # -inf included: no instant at all
            raise _error("malformed", "claims", f"the {name} claim is out of range")
        notes.append(("cwt_time_out_of_range", f"the {name} claim lies before 1970"))
    return value


def _text_keys(claims: Mapping, notes: list) -> Mapping:
    """Claim keys written as text ("4" for 4), as some encoders did: read as the integers."""
    for key in claims:
        if key.__class__ is str:
            break
    else:
        return claims
    out = {}
    for key, value in claims.items():
        if isinstance(key, str) and re.fullmatch(r"-?[0-9]{1,4}", key):
            notes.append(("cwt_claim_key_text", "CWT claim keys are written as text"))
            key = int(key)
        out.setdefault(key, value)
    return out


def read_claims(payload: bytes) -> Claims:
    """The CWT claims map and the DCC inside it (claim -260, key 1)."""
    claims = _cbor_loads(payload, "claims", "CWT payload")
    if not isinstance(claims, _MAPS):
        raise _error("malformed", "claims", "the CWT payload is not a map")
    notes: list = []
    if CLAIM_HCERT not in claims:
        claims = _text_keys(claims, notes)
    hcert = claims.get(CLAIM_HCERT)
    if isinstance(hcert, _MAPS) and 1 not in hcert:
        hcert = _text_keys(hcert, notes)
    dcc = hcert.get(1) if isinstance(hcert, _MAPS) else None
    if not isinstance(dcc, _MAPS):
        raise _error("malformed", "claims", "the CWT holds no health certificate (-260/1)")
    issuer = claims.get(CLAIM_ISS)
    if issuer is not None and not isinstance(issuer, str):
        raise _error("malformed", "claims", "the iss claim is not text")
    if claims.get(CLAIM_IAT) is None:
        notes.append(("cwt_no_iat", "the CWT has no iat claim"))
        issued_at = None
    else:
        issued_at = _instant(claims.get(CLAIM_IAT), "iat", notes)
    expires = _instant(claims.get(CLAIM_EXP), "exp", notes)
    if issued_at is not None and expires < issued_at:
        raise _error("malformed", "claims", "the code expires before it was issued")
    return Claims(issuer, None if issued_at is None else _utc(issued_at), _utc(expires), dcc,
                  tuple(dict.fromkeys(notes)) if notes else ())


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _utc(stamp) -> datetime:
    if stamp >= 0:  # the common case, several times cheaper than the timedelta below
        return datetime.fromtimestamp(stamp, timezone.utc)
    return _EPOCH + timedelta(seconds=stamp)


def certificate_type(dcc: Mapping) -> str:
    """``vaccination``, ``test`` or ``recovery``: a DCC holds exactly one non-empty group.

    A group that is ``null`` or an empty list counts as absent (some issuers write all three
    keys); :func:`to_record` reports the empty ones.
    """
    get = dcc.get
    present = [key for key in ("v", "t", "r") if get(key) is not None and get(key) != []]
    if len(present) != 1:
        raise _error("malformed", "claims",
                     "a DCC must hold exactly one of v, t and r" if present else
                     "the DCC holds no vaccination, test or recovery")
    entries = dcc[present[0]]
    if not isinstance(entries, (list, tuple)) or not entries:
        raise _error("malformed", "claims", f"the DCC's {present[0]} group is not a list")
    return TYPE_KEYS[present[0]]


def check_validity(claims: Claims, certificate: Certificate, at: datetime) -> None:
    """``at`` lies inside both the code's window and its signer's (module docstring)."""
    if claims.issued_at is not None and at < claims.issued_at:
        raise _error("not_yet_valid", "validity", "the code was issued after the checking time")
    if at > claims.expires:
        raise _error("expired", "validity", "the code has expired")
    if at < certificate.not_before:
        raise _error("not_yet_valid", "validity",
                     "the signer certificate is not valid yet at the checking time")
    if at > certificate.not_after:
        raise _error("expired", "validity", "the signer certificate has expired")
    if claims.issued_at is not None and claims.issued_at > certificate.not_after:
        raise _error("expired", "validity",
                     "the code was issued after its signer certificate expired")


def validity_notes(claims: Claims, certificate: Certificate) -> tuple[tuple[str, str], ...]:
    """The issuer's duties the hcert specification names and this code breaks (reported)."""
    notes = []
    if claims.issued_at is not None and claims.issued_at < certificate.not_before:
        notes.append(("dcc_iat_before_dsc", "the code says it was issued before its signer "
                                            "certificate became valid"))
    if claims.expires > certificate.not_after:
        notes.append(("dcc_exp_beyond_dsc", "the code claims validity beyond its signer "
                                            "certificate's; it is valid until the "
                                            "certificate's end"))
    return tuple(notes)


_DCC_OIDS = frozenset().union(*KEY_USAGE_OIDS.values())


def check_key_usage(certificate: Certificate, cert_type: str) -> None:
    """The DSC's extended key usage allows signing ``cert_type`` (module docstring)."""
    usage = certificate.extended_key_usage
    if not usage or _DCC_OIDS.isdisjoint(usage):  # no DCC OID: no restriction (hcert, CWA)
        return
    if KEY_USAGE_OIDS[cert_type].isdisjoint(usage):
        raise _error("wrong_key_usage", "key_usage",
                     f"the signer certificate may not sign {cert_type} certificates")


# -- mapping the payload onto the canonical record -------------------------------------------

_SCHEMA_VERSION = re.compile(r"1\.[0-3]\.\d+")
#: versions already matched, so the common case is one set lookup per scan
_SCHEMA_VERSIONS_SEEN: set[str] = set()


def _text(value) -> str | None:
    """Optional text fields: anything but a string is treated as absent."""
    return value if type(value) is str else None  # noqa: E721 - exact type is the fast check


def _count(value, what: str, warnings: Warnings, *, required: bool):
    """A dose count (``dn``, ``sd``): an integer; ``2.0`` or ``"2"`` are read with a warning
    (the hcert specification asks decoders to accept any reasonable type conversion)."""
    if type(value) is int:  # noqa: E721 - the common case
        return value
    if value is None:
        if required:
            raise _error("malformed", "mapping", f"{what} is missing")
        return None
    number = None
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and value.isascii():
        number = int(value)
    if number is None or isinstance(value, bool):
        raise _error("malformed", "mapping", f"{what} is not a number")
    warnings.add("dcc_number_type", f"{what} is not written as an integer")
    return number


def _disease(code, warnings: Warnings) -> str:
    if code == DISEASE_COVID or code is None:
        return "COVID-19"
    warnings.add("value_outside_value_set", f"tg {str(code)[:16]!r} is not a code this "
                                            f"service knows; kept as issued")
    return str(code)


def _entry(entry) -> Mapping:
    if not isinstance(entry, _MAPS):
        raise _error("malformed", "mapping", "a DCC entry is not a map")
    return entry


def _vaccination(entry: Mapping, warnings: Warnings) -> Vaccination:
    get = entry.get
    product = _text(get("mp")) or _text(get("vp"))
    if not product:
        warnings.add("dcc_empty_field", "the vaccination names no medicinal product")
        product = "unknown"
    return Vaccination(
        product=product, dose_number=_count(get("dn"), "dn", warnings, required=True),
        series_doses=sd if (sd := get("sd")).__class__ is int else
        _count(sd, "sd", warnings, required=False),
        administered_on=read_date(get("dt"), "dt", warnings, required=True),
        disease=_disease(get("tg"), warnings),
        vaccine_type=_text(get("vp")), manufacturer=_text(get("ma")),
        country=_text(get("co")), code=_text(get("ci")))


def _test(entry: Mapping, warnings: Warnings) -> TestResult:
    get = entry.get
    result_code, type_code = get("tr"), get("tt")
    result = TEST_RESULT_CODES.get(result_code)
    if result is None:
        warnings.add("value_outside_value_set", f"tr {str(result_code)[:16]!r} is not a test "
                                                f"result this service knows; kept as issued")
        result = "unknown"
    test_type = TEST_TYPE_CODES.get(type_code)
    if test_type is None:
        warnings.add("value_outside_value_set", f"tt {str(type_code)[:16]!r} is not a test "
                                                f"type this service knows; kept as issued")
        test_type = "other"
    return TestResult(
        type=test_type, result=result,
        sampled_at=read_date_time(get("sc"), "sc", warnings),
        disease=_disease(get("tg"), warnings), name=_text(get("nm")),
        manufacturer=_text(get("ma")), centre=_text(get("tc")), country=_text(get("co")),
        code=_text(get("ci")),
        # the codes as issued, where the record's vocabulary could not say them
        type_code=None if test_type != "other" else _text(type_code),
        result_code=None if result != "unknown" else str(result_code)[:64])


def _recovery(entry: Mapping, warnings: Warnings) -> Recovery:
    get = entry.get
    return Recovery(
        first_positive_on=read_date(get("fr"), "fr", warnings, required=True),
        valid_from=read_date(get("df"), "df", warnings),
        valid_until=read_date(get("du"), "du", warnings),
        disease=_disease(get("tg"), warnings), country=_text(get("co")))


def _subject(dcc: Mapping, warnings: Warnings) -> Subject:
    """The name as issued: ``fn``/``gn`` in the issuer's script, ``fnt``/``gnt`` in ICAO 9303
    transliteration (kept with its ``<`` fillers; the record's display forms space them)."""
    name = dcc.get("nam")
    if not isinstance(name, _MAPS):
        raise _error("malformed", "mapping", "the DCC has no name")
    get = name.get
    fn, gn, fnt, gnt = get("fn"), get("gn"), get("fnt"), get("gnt")
    if not (fn.__class__ is str and gn.__class__ is str and fnt.__class__ is str
            and gnt.__class__ is str):  # the common case has all four as text
        fn, gn, fnt, gnt = (_text(fn), _text(gn), _text(fnt), _text(gnt))
    if not (fn or gn or fnt or gnt):
        # Schema 1.3 requires fnt or gnt; a genuine code without them proves no holder, which
        # acceptance decides (as for an SHC lab card without a Patient), not the decoder.
        warnings.add("dcc_no_name", "the DCC carries no name")
    return Subject(family_name=fn, given_name=gn, family_name_latin=fnt, given_name_latin=gnt,
                   birth_date=read_date(dcc.get("dob"), "dob", warnings))


@functools.lru_cache(maxsize=256)
def _kid_text(kid: bytes) -> str:
    """The kid as trust lists print it (standard base64); only verified kids get here."""
    return base64.b64encode(kid).decode("ascii")


#: certificate type -> (DCC group key, entry mapper, Evidence builder)
_GROUPS = {"vaccination": ("v", _vaccination, lambda items: Evidence(vaccinations=items)),
           "test": ("t", _test, lambda items: Evidence(tests=items)),
           "recovery": ("r", _recovery, lambda items: Evidence(recoveries=items))}


def to_record(claims: Claims, cert_type: str, kid: bytes, warnings: Warnings | None = None, *,
              valid_until: datetime | None = None) -> Record:
    """The canonical record of a verified DCC. A DCC carries no colour: ``status`` is None.

    Every schema version 1.0.0 to 1.3.x maps alike: the fields this reads kept their meaning
    (1.0's ``t[].dr`` and later additions are simply not read). Codes (``mp``, ``ma``,
    ``co``, ``tg``, ``tt``, ``tr``...) are kept as issued; the ones the record interprets and
    does not know are reported as ``value_outside_value_set``.
    """
    warnings = Warnings() if warnings is None else warnings
    key, build, evidence = _GROUPS[cert_type]
    dcc = claims.dcc
    version = dcc.get("ver")
    if version not in _SCHEMA_VERSIONS_SEEN:
        if isinstance(version, str) and _SCHEMA_VERSION.fullmatch(version):
            if len(_SCHEMA_VERSIONS_SEEN) < 64:  # a handful exist; never grow without bound
                _SCHEMA_VERSIONS_SEEN.add(version)
        else:
            warnings.add("dcc_schema_version", f"schema version {str(version)[:16]!r} is not "
                                               f"one of 1.0.0 to 1.3.x")
    if ("v" in dcc) + ("t" in dcc) + ("r" in dcc) > 1:
        for other in ("v", "t", "r"):
            if dcc.get(other) == []:
                warnings.add("dcc_empty_group", f"the DCC carries an empty {other} list")
    entries = [_entry(e) for e in dcc[key]]
    provenance = Provenance(
        scheme="eu-dcc", issuer=claims.issuer, source_id=_text(entries[0].get("ci")) or None,
        issued_at=claims.issued_at,
        valid_until=claims.expires if valid_until is None else valid_until,
        key_id=_kid_text(kid))
    return Record(subject=_subject(dcc, warnings),
                  evidence=evidence(tuple([build(e, warnings) for e in entries])),
                  provenance=provenance)


# -- finding signers ----------------------------------------------------------------------------


#: How long a kid's entry in the signer index is used before it is checked against the store
#: again. TrustStore cannot remove certificates today; should it learn to, a removed DSC stays
#: usable for at most this long. Checking on every scan costs a SHA-256 of the DER (~5 µs).
RECHECK_SECONDS = 1.0


class _SignerIndex:
    """kid -> prepared keys of one trust store, so a scan does not hash every trusted DER.

    ``TrustStore.certificates_by_dcc_kid`` hashes each certificate per call (O(n) SHA-256s,
    ~40 µs for 50 certificates, a third of a whole verification). The index is only a hint:
    an entry is re-checked against the store every :data:`RECHECK_SECONDS`, and a miss or a
    failed signature falls back to the store's own list, so added or replaced certificates
    are always seen.
    """

    def __init__(self):
        self.by_kid: dict[bytes, tuple[_Key, ...]] = {}
        self._checked: dict[bytes, float] = {}
        self._known: dict[int, tuple[bytes, _Key]] = {}

    def hint(self, trust, kid: bytes, scheme: str) -> tuple[_Key, ...]:
        """The keys known for ``kid``, re-checked against ``trust`` when the check is due."""
        keys = self.by_kid.get(kid, ())
        if keys:
            now = time.monotonic()
            if now - self._checked.get(kid, -RECHECK_SECONDS) >= RECHECK_SECONDS:
                if not all(trust.certificate(k.certificate.der, scheme=scheme) is k.certificate
                           for k in keys):
                    return ()
                self._checked[kid] = now
        return keys

    def refresh(self, certificates) -> None:
        by_kid: dict[bytes, list[_Key]] = {}
        known = {}
        for cert in certificates:
            entry = self._known.get(id(cert))
            if entry is None or entry[1].certificate is not cert:
                entry = (cert.dcc_kid, _prepare(cert))
            known[id(cert)] = entry
            by_kid.setdefault(entry[0], []).append(entry[1])
        self.by_kid = {kid: tuple(keys) for kid, keys in by_kid.items()}
        self._checked = {}  # every entry was just read from the store, but recheck anyway
        self._known = known


class Verified(NamedTuple):
    """A COSE message whose signature verified, with its claims and its signer."""

    cose: CoseSign1
    claims: Claims
    certificate: Certificate
    certificate_type: str
    #: the signer key's curve name (EC DSCs), known from the prepared key
    curve: str | None = None


# -- encoding helpers ---------------------------------------------------------------------------

_UVCI_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"
#: ICAO Doc 9303 part 3 transliterations that are more than dropping a diacritic.
_ICAO_SPECIAL = {"Ä": "AE", "Æ": "AE", "Å": "AA", "Ö": "OE", "Ø": "OE", "Œ": "OE", "Ü": "UE",
                 "ẞ": "SS", "Þ": "TH", "Ð": "D", "Đ": "D", "Ħ": "H", "Ł": "L", "Ŀ": "L",
                 "Ĳ": "IJ", "Ŋ": "N", "Ŧ": "T", "ı": "I", "ĸ": "K"}


def luhn_mod_n(text: str, alphabet: str = _UVCI_ALPHABET) -> str:
    """The Luhn mod N check character of a UVCI (eHealth Network guidelines, Annex 2)."""
    n = len(alphabet)
    factor, total = 2, 0
    for char in reversed(text):
        addend = alphabet.index(char) * factor
        total += addend // n + addend % n
        factor = 3 - factor
    return alphabet[(n - total % n) % n]


def uvci(country: str) -> str:
    """A fresh unique certificate identifier, ``URN:UVCI:01:<country>:<random>#<check>``."""
    body = f"URN:UVCI:01:{country}:{secrets.token_hex(13).upper()}"
    return f"{body}#{luhn_mod_n(body)}"


def icao_transliterate(name: str | None) -> str | None:
    """A name as ICAO 9303 machine-readable text (A-Z and ``<``), None if nothing Latin is left.

    Umlauts and ligatures expand (Gößinger -> GOESSINGER), other diacritics are dropped,
    spaces and hyphens become ``<``, other characters (apostrophes, non-Latin script) vanish.
    """
    if not name:
        return None
    out = []
    for char in name.upper():
        if char in _ICAO_SPECIAL:
            out.append(_ICAO_SPECIAL[char])
        elif char in " -<,":
            out.append("<")
        else:
            out.extend(c for c in unicodedata.normalize("NFD", char) if "A" <= c <= "Z")
    text = re.sub("<+", "<", "".join(out)).strip("<")[:80].rstrip("<")
    return text if re.search("[A-Z]", text) else None


def _full_date(value: str | None, what: str) -> str:
    if not value or len(value) != 10:
        raise CodeError("policy_refused", f"a DCC needs the full date of {what}")
    return value


def _require(entry: dict, what: str) -> dict:
    """Refuse an entry that lacks a field the DCC schema makes mandatory."""
    missing = sorted(k for k, v in entry.items() if v is None)
    if missing:
        raise CodeError("policy_refused",
                        f"the {what} lacks what a DCC must carry: {', '.join(missing)}")
    return entry


def _disease_code(disease: str | None) -> str:
    if disease is None or disease.strip().upper() in ("COVID-19", "COVID19", DISEASE_COVID):
        return DISEASE_COVID
    raise CodeError("policy_refused", f"a DCC only covers COVID-19, not {disease!r}")


def _signer_certificate(der: bytes | None) -> Certificate:
    if not der:
        raise ConfigurationError("the EU DCC signer needs a DSC (Signer.certificate)")
    return _load_signer_certificate(bytes(der))


@functools.lru_cache(maxsize=16)
def _load_signer_certificate(der: bytes) -> Certificate:
    """Parse our own DSC once (it is the same for every code we issue)."""
    try:
        return load_certificate(der)
    except ValueError as exc:
        raise ConfigurationError(f"the EU DCC signer certificate is unreadable: {exc}") from exc


def _algorithm(private_key) -> int:
    """The COSE algorithm of our signing key: ES256 for EC P-256, PS256 for RSA."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ConfigurationError("an EU DCC EC signing key must be on P-256")
        return ALG_ES256
    if isinstance(private_key, rsa.RSAPrivateKey):
        return ALG_PS256
    raise ConfigurationError("an EU DCC signing key must be EC P-256 or RSA")


def _sign(private_key, alg: int, signed: bytes) -> bytes:
    """The raw COSE signature: r||s (32 bytes each) for ES256, the PSS block for PS256."""
    if alg == ALG_ES256:
        r, s = decode_dss_signature(private_key.sign(signed, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return private_key.sign(signed, _PSS_32, _SHA256)


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
        hint = index.hint(trust, cose.kid, scheme)
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
