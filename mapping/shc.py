"""SMART Health Cards (``shc:/``): numeric QR text, compact JWS (ES256, raw DEFLATE), FHIR R4.

Decoding order, and why:

1. Size cap, then the ``shc:/`` numeric form (two digits per JWS character, ``ord(c) - 45``,
   each pair at most 77). A card split over several QR codes arrives as its chunks
   ``shc:/i/n/...`` joined by newlines, in any order; every ``i`` in ``1..n`` must be there once.
2. The JWS header: ``alg`` must be ``ES256`` (allow-list; anything else cannot carry a signature
   we accept, so it is ``bad_signature``), ``zip`` must be ``DEF`` and ``kid`` present.
3. The signature is checked *before* the payload is inflated or parsed. SHC kids are RFC 7638
   thumbprints, so the trusted key can be found from the header alone; verifying first means a
   tampered payload is reported as ``bad_signature`` whatever the tampering did to the DEFLATE
   stream, and unauthenticated bytes are never parsed on the path of a good card. Only when no
   trusted key has that kid is the payload inflated (under the same size cap), to tell an
   untrusted issuer from an unknown key of a trusted one.
4. ``iss`` must be an issuer the trust store holds for this scheme (never fetched from the
   ``iss`` URL) and the key must be trusted *for that issuer*: a card signed by issuer A's key
   that names issuer B is ``unknown_key``. The kid must equal the key's thumbprint, so a key
   filed under a wrong kid is never used.
5. Where the trusted JWK carries ``x5c``: the leaf's public key must be the JWK's, the leaf's SAN
   URI must be ``iss``, and each certificate must be signed by the next. Certificate dates are
   reported (``details["x5c_valid_at_issue"]``), not enforced: the trust anchor is the JWK the
   operator configured, the chain only binds it to the issuer's name, and the specification's own
   example was signed after its leaf expired. The result is cached per key, as it cannot change.
6. ``nbf`` (fractional NumericDates allowed) may be up to :data:`NBF_SKEW` ahead of ``at``, as a
   scanner's clock may lag the issuer's; ``exp`` gets no leeway (RFC 7519: valid strictly before
   ``exp``), because stretching an issuer's limit is not ours to do. Expiry is checked before
   revocation, so an expired revoked card says ``expired``.
7. Revocation by ``vc.rid`` against the revocation list trusted for ``(iss, kid)``, comparing the
   list's timestamp with ``nbf``.

Deviations from the letter of the specification that do not touch authenticity are accepted and
reported in :attr:`~mapping.base.Decoded.warnings`:

- bytes after the end of the DEFLATE stream (``shc_deflate_trailing_bytes``): the signature
  covers the whole payload segment, trailing bytes included, and is checked first; the SMART
  Health Card decoder (smart-on-fhir/smart-health-card-decoder) inflates with fflate's
  ``inflateSync``, which stops at the final block and ignores what follows, so it accepts them;
- an issuer the trust store knows as an alias of a ``canonical_iss`` (VCI directory): the card
  verifies with the alias's own keys, and the canonical issuer is named (``shc_issuer_alias``,
  ``details["canonical_issuer"]``), as the directory intends;
- chunk variations: chunks in any order, separated by any whitespace, with or without a
  leading zero in ``i``/``n``, and the same chunk scanned twice (``shc_duplicate_chunk``; two
  different texts for one index stay malformed);
- a Patient name in STU3 shape (``family`` as a list, ``given`` as a string):
  ``shc_name_shape``.

JWK sets may carry members beyond the key (``use``, ``alg``, ``crlVersion``, ``x5c``, private
extensions): keys are matched by their RFC 7638 thumbprint, which only reads the key members.

FHIR mapping: Patient -> subject; ``completed`` Immunization -> vaccination (``product`` is
``"<coding system>#<code>"``; ``dose_number`` from ``protocolApplied`` or else the dose's 1-based
position among the card's completed immunizations, in bundle order, which is issue order in
practice); Observation with a known COVID-19 LOINC code and a known qualitative result ->
test (``code`` is ``"http://loinc.org#<code>"``). Everything else is counted in
``details["unmapped"]`` rather than guessed at. SHC has no colour, so ``status`` stays ``None``.
The Immunization performer is the administering site, not the manufacturer, and the record has no
field for a site, so it is not mapped; ``manufacturer`` comes from ``Immunization.manufacturer``.
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import zlib
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from healthcode.certs import load_certificate
from healthcode.errors import HealthCodeError
from healthcode.record import (Evidence, Provenance, Record, Subject, TestResult, Vaccination,
                               format_time)
from healthcode.trust import b64url, jwk_thumbprint

from .base import CodeError, Decoded, MappingAdapter, Signer, Warnings, check_size, utcnow

__all__ = ["SHCAdapter", "jws_from_qr_text", "jws_to_qr_text", "PREFIX"]

PREFIX = "shc:/"
#: A version 22 QR code in numeric mode holds 1195 JWS characters: the spec's single-chunk cap.
MAX_SINGLE_JWS = 1195
#: Cap on the inflated payload. The largest spec example (a 51-result lab panel over three QR
#: codes) inflates to 30 kB; DEFLATE can expand 1000-fold, so the cap stops a bomb early.
MAX_INFLATED = 256 * 1024
#: How far ahead of the scanner's clock a card's ``nbf`` may be.
NBF_SKEW = timedelta(seconds=60)
#: NumericDates beyond year 9999 cannot be datetimes; they are malformed, not far-future.
_MAX_NUMERIC_DATE = 253402300799

HEALTH_CARD = "https://smarthealth.cards#health-card"
_TYPE_IMMUNIZATION = "https://smarthealth.cards#immunization"
_TYPE_LABORATORY = "https://smarthealth.cards#laboratory"
_TYPE_COVID = "https://smarthealth.cards#covid19"

CVX = "http://hl7.org/fhir/sid/cvx"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
_PATIENT_REF = "resource:0"

#: ``i/n/`` after the prefix of a chunk; a single code has only digits there.
_CHUNK_HEAD = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/")

#: bytes.fromhex reads the digit pair "dd" as 16*d1 + d2; this table turns that into the JWS
#: character 10*d1 + d2 + 45, and every pair above 77 into NUL, which no JWS contains.
_PAIR_TABLE = bytes(
    (10 * (i >> 4) + (i & 15) + 45) if (i >> 4) < 10 and (i & 15) < 10
    and 10 * (i >> 4) + (i & 15) <= 77 else 0 for i in range(256))
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_CHAR_PAIRS = {chr(v + 45): f"{v:02d}" for v in range(78)}

#: CVX codes of COVID-19 vaccines (US and WHO-listed non-US products).
_COVID_CVX = frozenset(str(c) for c in (*range(207, 214), 217, 218, 219, 221, *range(225, 231),
                                        300, 301, 302, *range(308, 314), *range(500, 521)))
#: EU DCC medicinal products (``mp``) -> CVX, for cards converted from an EU DCC record.
_EU_PRODUCT_CVX = {"EU/1/20/1528": "208", "EU/1/20/1507": "207", "EU/1/21/1529": "210",
                   "EU/1/20/1525": "212", "EU/1/21/1618": "211"}

#: Common SARS-CoV-2 LOINC codes by test type. Codes outside this table are not taken for a
#: COVID-19 test: a card's other lab results (example 02's urinalysis) are not evidence.
_LOINC_TYPES = {
    **dict.fromkeys(("94306-8", "94307-6", "94308-4", "94309-2", "94314-2", "94315-9",
                     "94316-7", "94500-6", "94531-1", "94533-7", "94534-5", "94559-2",
                     "94565-9", "94640-0", "94641-8", "94745-7", "94746-5", "94756-4",
                     "94757-2", "94759-8", "94760-6", "94845-5", "95406-5", "95409-9",
                     "95608-7", "96094-8", "96123-5"), "pcr"),
    **dict.fromkeys(("94558-4", "95209-3", "96119-3", "97097-0"), "rat"),
    **dict.fromkeys(("94503-0", "94504-8", "94505-5", "94506-3", "94507-1", "94508-9",
                     "94547-7", "94562-6", "94563-4", "94661-6", "94762-2", "94769-7"),
                    "antibody"),
}
#: The code each test type is issued with when the record names no LOINC code of its own.
_DEFAULT_LOINC = {"pcr": "94500-6", "rat": "94558-4", "antibody": "94762-2"}

#: Qualitative results (SNOMED CT findings and LOINC answers) -> record result.
_RESULTS = {
    (SNOMED, "260385009"): "negative", (SNOMED, "260415000"): "negative",
    (SNOMED, "260373001"): "positive", (SNOMED, "10828004"): "positive",
    (SNOMED, "419984006"): "inconclusive", (SNOMED, "42425007"): "inconclusive",
    (SNOMED, "82334004"): "inconclusive",
    (LOINC, "LA6577-6"): "negative", (LOINC, "LA11883-8"): "negative",
    (LOINC, "LA6576-8"): "positive", (LOINC, "LA11882-0"): "positive",
    (LOINC, "LA11884-6"): "inconclusive",
}
_RESULT_CODES = {"negative": "260385009", "positive": "10828004", "inconclusive": "419984006"}

#: Issues cards (pyjwt's encoder with the SHC header); verifying is in _verify_signature.
_JWS = jwt.PyJWS(algorithms=["ES256"])
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class SHCAdapter(MappingAdapter):
    """SMART Health Cards: verify ``shc:/`` codes into records, and issue them (one QR code)."""

    scheme = "shc"
    can_encode = True

    def detect(self, text) -> bool:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return isinstance(text, str) and text.lstrip().startswith(PREFIX)

    def decode(self, text, *, trust, at: datetime | None = None) -> Decoded:
        """Decode and verify an SHC; every failure is a :class:`CodeError`.

        :param text: one ``shc:/`` code, or the chunks of one card joined by newlines
        :param trust: the trust store holding the issuers, keys and revocation lists to accept
        :param at: when to judge ``nbf``/``exp`` (default: now)
        """
        try:
            return _decode(text, trust, _aware(at))
        except CodeError:
            raise
        except HealthCodeError as exc:  # a record field the bundle filled wrongly
            raise CodeError("malformed", f"the FHIR bundle does not map: {exc.message}") from exc
        except Exception as exc:  # scanned input is hostile: nothing else may escape
            raise CodeError("malformed", f"unreadable SMART Health Card "
                                         f"({type(exc).__name__})") from exc

    def encode(self, record: Record, *, signer: Signer, at: datetime | None = None) -> str:
        """Issue ``record`` as a single-QR SHC signed by ``signer``.

        The header ``kid`` is always the RFC 7638 thumbprint of the signer's public key, as the
        SHC spec requires, even where ``signer.kid`` says otherwise: verifiers look keys up by
        thumbprint. No ``rid`` is set, as this service publishes no SHC revocation list.

        :raises CodeError: ``policy_refused`` when the record cannot be said in SHC terms,
            ``too_large`` when the card would not fit one QR code
        """
        key = _signing_key(signer)
        at = _aware(at)
        claims = {"iss": signer.issuer, "nbf": _numeric_date(at),
                  "vc": {"type": _card_types(record),
                         "credentialSubject": {"fhirVersion": "4.0.1",
                                               "fhirBundle": bundle_from_record(record)}}}
        exp = _expiry(record, at)
        if exp is not None:
            claims["exp"] = exp
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        compressed = compressor.compress(payload) + compressor.flush()
        kid = jwk_thumbprint(_public_jwk(key.public_key()))
        token = _JWS.encode(compressed, key, algorithm="ES256",
                            headers={"zip": "DEF", "kid": kid, "typ": None})
        if len(token) > MAX_SINGLE_JWS:
            raise CodeError("too_large", f"the card's JWS is {len(token)} characters; one QR "
                                         f"code holds {MAX_SINGLE_JWS}")
        return jws_to_qr_text(token)


# -- numeric QR text ---------------------------------------------------------------------------

def jws_to_qr_text(jws: str) -> str:
    """The single-chunk ``shc:/`` numeric form of a compact JWS."""
    return PREFIX + "".join(_CHAR_PAIRS[c] for c in jws)


def jws_from_qr_text(text: str) -> tuple[str, int]:
    """The compact JWS inside ``shc:/`` text (one code, or chunks in any order) and the chunk
    count; ``malformed`` for anything else.

    Codes are separated by newlines (the contract) or any other whitespace, which never
    occurs inside a code.
    """
    return _read_qr_text(text, Warnings())


def _read_qr_text(text: str, warnings: Warnings) -> tuple[str, int]:
    codes = text.split()
    if len(codes) == 1 and codes[0].startswith(PREFIX):  # one QR code, the common case
        heads = [_CHUNK_HEAD.match(codes[0], len(PREFIX))]
        if heads[0] is None:
            return _digits_to_text(codes[0][len(PREFIX):]), 1
    elif not codes or not all(code.startswith(PREFIX) for code in codes):
        raise CodeError("malformed", "an SMART Health Card starts with shc:/")
    else:
        # the digits themselves are checked by _digits_to_text; a regex over them costs time
        heads = [_CHUNK_HEAD.match(code, len(PREFIX)) for code in codes]
    if not all(heads):
        raise CodeError("malformed", "several codes that are not all shc:/i/n/ chunks")
    return _join_chunks([(int(m.group(1)), int(m.group(2)), code[m.end():])
                         for m, code in zip(heads, codes)], warnings)


def _join_chunks(chunks: list[tuple[int, int, str]],
                 warnings: Warnings | None = None) -> tuple[str, int]:
    """Put chunks in order, refusing a set that is not exactly ``1..n`` of one card.

    The same chunk scanned twice (identical text) is used once; two different texts for one
    index are refused, as there is no telling which belongs to the card.
    """
    if len({i for i, _, _ in chunks}) < len(chunks):
        # an index seen twice: the same chunk scanned again, or two chunks for one index (only
        # then are the chunks' texts hashed, a microsecond per QR code's worth of digits)
        unique = list(dict.fromkeys(chunks))
        if len(unique) < len(chunks) and warnings is not None:
            warnings.add("shc_duplicate_chunk", "a chunk was scanned more than once")
        chunks = unique
    totals = {n for _, n, _ in chunks}
    if len(totals) != 1:
        raise CodeError("malformed", "the chunks disagree on how many there are")
    total = totals.pop()
    indexes = sorted(i for i, _, _ in chunks)
    if indexes != list(range(1, total + 1)):
        raise CodeError("malformed", f"expected chunks 1..{total} once each, got {indexes}")
    ordered = sorted(chunks)
    return "".join(_digits_to_text(digits) for _, _, digits in ordered), total


def _digits_to_text(digits: str) -> str:
    """Two digits per character, ``value + 45``; odd lengths and pairs above 77 are refused.

    ``bytes.fromhex`` + ``translate`` keep the per-character work in C (a Python loop over the
    pairs costs as much as the signature check). ``fromhex`` refuses odd lengths and non-hex
    characters; it skips whitespace, which the length comparison catches; hex letters and pairs
    above 77 translate to NUL.
    """
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        raise CodeError("malformed", "the numeric part must be an even number of digits") \
            from None
    text = data.translate(_PAIR_TABLE)
    if 2 * len(data) != len(digits) or 0 in text:
        raise CodeError("malformed", "the numeric part holds something other than digit pairs "
                                     "from 00 to 77")
    return text.decode("ascii")


# -- JWS ---------------------------------------------------------------------------------------

class _JWSParts(NamedTuple):
    header: dict
    kid: str
    payload: bytes  # still compressed
    signature: bytes


def _split_jws(jws: str) -> _JWSParts:
    """Parse the compact JWS far enough to pick a key: header checks, strict base64url."""
    parts = jws.split(".")
    if len(parts) != 3:
        raise CodeError("malformed", "a compact JWS has three parts")
    raw_header = _b64url_decode(parts[0])
    # json.loads(bytes) first guesses the encoding; bytes starting '{"' are UTF-8 to it (no BOM,
    # no NUL), so the same decode ('surrogatepass', as json does) is done here directly
    header = json.loads(raw_header.decode("utf-8", "surrogatepass")
                        if raw_header[:2] == b'{"' else raw_header)
    if not isinstance(header, dict):
        raise CodeError("malformed", "the JWS header is not an object")
    if header.get("alg") != "ES256":
        # scanned text goes into the message: keep it short
        raise CodeError("bad_signature", f"alg {str(header.get('alg'))[:16]!r} is not ES256, "
                                         f"the only algorithm SMART Health Cards use")
    if header.get("zip") != "DEF":
        raise CodeError("malformed", "the JWS header must say zip DEF")
    if "crit" in header or "b64" in header:
        raise CodeError("malformed", "critical JWS extensions are not part of SHC")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CodeError("malformed", "the JWS header has no kid")
    return _JWSParts(header, kid, _b64url_decode(parts[1]),
                     _b64url_decode(parts[2], canonical=True))


def _b64url_decode(part: str, *, canonical: bool = False) -> bytes:
    """base64url without padding; ``canonical`` also requires the bytes to encode back to
    exactly ``part``.

    The header and payload need no canonical check: the signature covers their *text*, so any
    other spelling fails it. The signature's own text is not covered, so it must be canonical,
    or changing the unused low bits of its last character would go unnoticed.
    """
    try:
        # what base64.urlsafe_b64decode does, minus two layers of Python on the hot path
        data = binascii.a2b_base64(
            (part + "=" * (-len(part) % 4)).encode("ascii").translate(_URLSAFE_TO_STANDARD))
    except (binascii.Error, ValueError):
        raise CodeError("malformed", "a JWS part is not base64url") from None
    if canonical and b64url(data) != part:
        raise CodeError("malformed", "the JWS signature is not canonical base64url")
    return data


def _verify_signature(jws: str, signature: bytes, key) -> None:
    """ES256 over the JWS signing input, straight through ``cryptography``.

    Not ``PyJWS.decode_complete``: that re-parses the header and re-decodes every segment with
    a per-character Python check, which cost as much as the signature itself, and
    :func:`_split_jws` has already checked the header (alg allow-list) and decoded the parts.
    The algorithm is fixed here, never read from the header, and the key is P-256
    (:func:`_signing_candidate`).
    """
    if len(signature) != 64:
        raise CodeError("bad_signature", "an ES256 signature is 64 bytes")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, jws[:jws.rindex(".")].encode("ascii"), _ECDSA_SHA256)
    except InvalidSignature:
        raise CodeError("bad_signature", "the signature does not verify") from None


def _inflate(data: bytes, warnings: Warnings | None = None) -> bytes:
    """Raw DEFLATE with an output cap: a bomb is ``too_large`` before it costs memory.

    Bytes after the final block are reported, not refused (module docstring): they were signed
    with the rest of the payload segment. A stream that ends early is still malformed.
    """
    try:
        inflater = zlib.decompressobj(-15)
        out = inflater.decompress(data, MAX_INFLATED)
    except zlib.error:
        raise CodeError("malformed", "the payload is not raw DEFLATE") from None
    if inflater.unconsumed_tail:
        raise CodeError("too_large", f"the payload inflates beyond {MAX_INFLATED} bytes")
    if not inflater.eof:
        raise CodeError("malformed", "the DEFLATE stream is truncated")
    if inflater.unused_data and warnings is not None:
        warnings.add("shc_deflate_trailing_bytes", f"{len(inflater.unused_data)} byte(s) "
                                                   f"follow the end of the DEFLATE stream")
    return out


def _claims(compressed: bytes, warnings: Warnings | None = None) -> dict:
    claims = json.loads(_inflate(compressed, warnings).decode("utf-8"))
    if not isinstance(claims, dict):
        raise CodeError("malformed", "the JWS payload is not a JSON object")
    if not isinstance(claims.get("iss"), str):
        raise CodeError("malformed", "the payload has no iss")
    return claims


# -- trust -------------------------------------------------------------------------------------

def _signing_candidate(trust, kid: str):
    """A trusted SHC key whose thumbprint is ``kid``, from any issuer, or ``None``.

    Keys filed under a kid that is not their thumbprint are passed over: SHC defines the kid
    as the thumbprint, so such a key cannot be the one the card names.
    """
    for trusted in trust.keys_by_kid(kid, scheme="shc"):
        known = _KEY_FACTS.get(id(trusted))
        if known is None or known[0] is not trusted:
            if len(_KEY_FACTS) >= _KEY_FACTS_SIZE:
                _KEY_FACTS.clear()
            known = _KEY_FACTS[id(trusted)] = (
                trusted, _thumbprint(trusted.jwk) if _is_p256(trusted) else None)
        if known[1] == kid:
            return trusted
    return None


#: id(trusted key) -> (the key, its RFC 7638 thumbprint, or None when it is not P-256). A
#: TrustedKey is immutable and the store hands out the same object on every lookup, so this is
#: worked out once per key, not per scan (an ABC instance check and a thumbprint lookup). The
#: key itself is held, so a reused id never answers for another key; the map is emptied when
#: full, as trust reloads replace keys.
_KEY_FACTS: dict[int, tuple[object, str | None]] = {}
_KEY_FACTS_SIZE = 8192


def _is_p256(trusted) -> bool:
    key = trusted.key
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def _thumbprint(jwk: dict) -> str | None:
    try:
        return _cached_thumbprint(jwk.get("kty"), jwk.get("crv"), jwk.get("x"), jwk.get("y"))
    except (KeyError, TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=1024)
def _cached_thumbprint(kty, crv, x, y) -> str:
    return jwk_thumbprint({"kty": kty, "crv": crv, "x": x, "y": y})


def _no_key_reason(trust, parts: _JWSParts) -> CodeError:
    """No trusted key has this kid: read ``iss`` (capped) to say whether the issuer is known."""
    iss = _claims(parts.payload)["iss"]
    if not trust.is_trusted_issuer(iss, "shc"):
        return CodeError("untrusted_issuer", f"issuer {iss} is not trusted for SHC")
    return CodeError("unknown_key", f"issuer {iss} has no trusted key {parts.kid}")


def _issuer_key(trust, iss: str, kid: str):
    """The key must be trusted for the issuer the card names, not just for someone."""
    if not trust.is_trusted_issuer(iss, "shc"):
        raise CodeError("untrusted_issuer", f"issuer {iss} is not trusted for SHC")
    trusted = trust.key(iss, kid)
    if trusted is None or trusted.scheme not in (None, "shc"):
        raise CodeError("unknown_key", f"issuer {iss} has no trusted key {kid}")
    return trusted


class _Chain(NamedTuple):
    """What checking an ``x5c`` chain found: a failure reason, or the certificates' facts."""

    reason: str | None
    message: str
    subjects: tuple[str, ...] = ()
    windows: tuple[tuple[datetime, datetime], ...] = ()


def _x5c_details(trusted, iss: str, issued_at: datetime) -> dict:
    """Check the PKI path a trusted JWK carries; report certificate dates at issue time."""
    jwk = trusted.jwk
    if not isinstance(jwk["x5c"], list) or not all(isinstance(c, str) for c in jwk["x5c"]):
        raise CodeError("untrusted_issuer", "the trusted key's x5c is not a certificate list")
    chain = _check_chain(iss, tuple(jwk["x5c"]), str(jwk.get("crv")), str(jwk.get("x")),
                         str(jwk.get("y")))
    if chain.reason:
        raise CodeError(chain.reason, chain.message)
    return {"x5c_verified": True, "x5c_subjects": list(chain.subjects),
            "x5c_valid_at_issue": all(nb <= issued_at <= na for nb, na in chain.windows)}


@functools.lru_cache(maxsize=256)
def _check_chain(iss: str, x5c: tuple, crv, x, y) -> _Chain:
    """Leaf key = the JWK, leaf SAN URI = ``iss``, each certificate signed by the next.

    Cached: the answer depends only on these arguments, and the chain's signatures (P-384 and
    P-521 in the spec example) cost more than verifying the card itself.
    """
    try:
        certs = [load_certificate(base64.b64decode(c, validate=True)) for c in x5c]
        jwk_key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_b64url_decode(x), "big"), int.from_bytes(_b64url_decode(y), "big"),
            ec.SECP256R1()).public_key()
    except (ValueError, TypeError, binascii.Error, CodeError) as exc:
        return _Chain("untrusted_issuer", f"the key's x5c chain is unreadable: {exc}")
    if crv != "P-256" or not certs:
        return _Chain("untrusted_issuer", "the key's x5c chain is empty or not for P-256")
    leaf = certs[0]
    if leaf.public_key_spki() != jwk_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return _Chain("unknown_key", "the x5c leaf certificate is for another key")
    if iss not in leaf.san_uris:
        return _Chain("untrusted_issuer", f"the x5c leaf certificate is not issued to {iss}")
    for child, parent in zip(certs, certs[1:]):
        if not _signed_by(child, parent):
            return _Chain("untrusted_issuer", f"{child.subject} is not signed by {parent.subject}")
    return _Chain(None, "", tuple(c.subject for c in certs),
                  tuple((c.not_before, c.not_after) for c in certs))


def _signed_by(child, parent) -> bool:
    if child.parsed is None or parent.parsed is None:
        return False  # only cryptography can verify; a certificate it cannot read fails
    try:
        child.parsed.verify_directly_issued_by(parent.parsed)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


# -- claims ------------------------------------------------------------------------------------

def _numeric_date_claim(claims: dict, name: str, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    # the range test also refuses NaN and infinities, which compare false
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 <= value <= _MAX_NUMERIC_DATE:
        raise CodeError("malformed", f"{name} must be a NumericDate")
    return datetime.fromtimestamp(value, timezone.utc)


def _check_times(nbf: datetime, exp: datetime | None, at: datetime) -> None:
    if nbf > at + NBF_SKEW:
        raise CodeError("not_yet_valid", f"the card is valid from {format_time(nbf)}")
    if exp is not None and at >= exp:
        raise CodeError("expired", f"the card expired at {format_time(exp)}")


def _vc(claims: dict) -> tuple[dict, list[str], dict]:
    """The ``vc`` claim, its type list and its FHIR bundle, or ``malformed``."""
    vc = claims.get("vc")
    if not isinstance(vc, dict):
        raise CodeError("malformed", "the payload has no vc claim")
    types = vc.get("type")
    if not isinstance(types, list) or HEALTH_CARD not in types:
        raise CodeError("malformed", f"vc.type must list {HEALTH_CARD}")
    for kind in types:  # a loop, not all() over a generator: this runs for every card
        if not isinstance(kind, str):
            raise CodeError("malformed", f"vc.type must list {HEALTH_CARD}")
    subject = vc.get("credentialSubject")
    bundle = subject.get("fhirBundle") if isinstance(subject, dict) else None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" \
            or not isinstance(bundle.get("entry"), list):
        raise CodeError("malformed", "vc.credentialSubject.fhirBundle is not a FHIR Bundle")
    rid = vc.get("rid")
    if rid is not None and not isinstance(rid, str):
        raise CodeError("malformed", "vc.rid must be a string")
    return vc, types, bundle


def _canonical_issuer(trust, iss: str) -> str | None:
    """The ``canonical_iss`` the trust store's issuer list gives ``iss`` (VCI directory), if
    the store keeps issuer information (``TrustStore.issuer_info``)."""
    info = getattr(trust, "issuer_info", None)
    entry = info(iss) if callable(info) else None
    canonical = getattr(entry, "canonical_iss", None)
    return canonical if isinstance(canonical, str) and canonical != iss else None


def _decode(text, trust, at: datetime) -> Decoded:
    warnings = Warnings()
    jws, chunks = _read_qr_text(check_size(text), warnings)
    parts = _split_jws(jws)
    candidate = _signing_candidate(trust, parts.kid)
    if candidate is None:
        raise _no_key_reason(trust, parts)
    _verify_signature(jws, parts.signature, candidate.key)
    claims = _claims(parts.payload, warnings)
    iss = claims["iss"]
    trusted = _issuer_key(trust, iss, parts.kid)
    nbf = _numeric_date_claim(claims, "nbf", required=True)
    exp = _numeric_date_claim(claims, "exp", required=False)
    details: dict = {"chunks": chunks}
    canonical = _canonical_issuer(trust, iss)
    if canonical:
        # The VCI directory lists this iss as an alias: its own keys signed the card (checked
        # above, never the canonical issuer's keys for an alias's card), and staff see who the
        # issuer is known as.
        details["canonical_issuer"] = canonical
        warnings.add("shc_issuer_alias", f"issuer {iss} is known as {canonical}")
    if "x5c" in trusted.jwk:
        details.update(_x5c_details(trusted, iss, nbf))
    _check_times(nbf, exp, at)
    vc, types, bundle = _vc(claims)
    rid = vc.get("rid")
    if trust.is_revoked(iss, parts.kid, rid, nbf):
        raise CodeError("revoked", f"the issuer revoked card {rid}")
    details["types"] = list(types)
    provenance = Provenance(scheme="shc", issuer=iss, source_id=rid, issued_at=nbf,
                            valid_until=exp, key_id=parts.kid)
    record, unmapped = record_from_bundle(bundle, provenance, warnings)
    if unmapped:
        details["unmapped"] = unmapped
    return Decoded(record=record, scheme="shc", issuer=iss, kid=parts.kid, details=details,
                   warnings=warnings.as_tuple())


# -- FHIR bundle -> record ---------------------------------------------------------------------

def record_from_bundle(bundle: dict, provenance: Provenance,
                       warnings: Warnings | None = None) -> tuple[Record, dict]:
    """The canonical record of a (verified) SHC bundle, and a count per resourceType of the
    resources that did not map (other types, not-done doses, results that are not COVID-19)."""
    by_type = _resources_by_type(bundle["entry"])
    patients = by_type.pop("Patient", ())
    if len(patients) > 1:
        raise CodeError("malformed", "the bundle names more than one Patient")
    immunizations = by_type.pop("Immunization", ())
    observations = by_type.pop("Observation", ())
    vaccinations = _vaccinations(immunizations)
    # only an Observation with a coded value can be a qualitative result (see _test_result):
    # a lab panel's quantities are passed over without a call each
    tests = tuple(filter(None, map(_test_result, [resource for resource in observations
                                                  if "valueCodeableConcept" in resource])))
    unmapped = {str(kind): len(resources) for kind, resources in by_type.items()}
    for kind, given, mapped in (("Immunization", immunizations, vaccinations),
                                ("Observation", observations, tests)):
        if len(mapped) < len(given):
            unmapped[kind] = len(given) - len(mapped)
    subject = _subject(patients[0], Warnings() if warnings is None else warnings) \
        if patients else Subject()
    record = Record(subject=subject, evidence=Evidence(tests=tests, vaccinations=vaccinations),
                    provenance=provenance)
    return record, unmapped


def _resources_by_type(entries: list) -> dict[str, list[dict]]:
    """Group the entries' resources by resourceType, in bundle order."""
    by_type = defaultdict(list)
    try:
        # JSON gives dicts, lists, strings, numbers: anything but a dict (an entry, a resource)
        # fails the subscript with KeyError or TypeError, as does an unhashable resourceType
        for entry in entries:
            resource = entry["resource"]
            by_type[resource["resourceType"]].append(resource)
    except (KeyError, TypeError):
        raise CodeError("malformed", "every bundle entry must hold a resource with a "
                                     "resourceType") from None
    return by_type


def _subject(patient: dict, warnings: Warnings) -> Subject:
    """The first HumanName as issued: ``family``, ``given`` (joined), else ``text``."""
    names = patient.get("name") or [{}]
    if isinstance(names, dict):
        warnings.add("shc_name_shape", "Patient.name is an object, not a list")
        names = [names]
    if not isinstance(names, list) or not isinstance(names[0], dict):
        raise CodeError("malformed", "Patient.name must be a list of HumanName")
    name = names[0]
    given = name.get("given") or []
    family = name.get("family")
    if isinstance(given, str):
        warnings.add("shc_name_shape", "Patient.name.given is a string, not a list")
        given = [given]
    if isinstance(family, list) and all(isinstance(f, str) for f in family):
        warnings.add("shc_name_shape", "Patient.name.family is a list (FHIR STU3), not a "
                                       "string")
        family = " ".join(family) or None
    if not isinstance(given, list):
        raise CodeError("malformed", "Patient.name.given must be a list of strings")
    for part in given:  # a loop, not all() over a generator: this runs for every card
        if not isinstance(part, str):
            raise CodeError("malformed", "Patient.name.given must be a list of strings")
    return Subject(family_name=family, given_name=" ".join(given) or None,
                   name=name.get("text") if not (given or family) else None,
                   birth_date=patient.get("birthDate"))


def _vaccinations(immunizations) -> tuple[Vaccination, ...]:
    """Completed immunizations in bundle order; the position is the dose number fallback.

    Not-done and entered-in-error immunizations are not doses, so they take no position.
    """
    done = [r for r in immunizations if r.get("status") == "completed"]
    return tuple(filter(None, [_vaccination(r, position)
                               for position, r in enumerate(done, start=1)]))


def _vaccination(resource: dict, position: int) -> Vaccination | None:
    coding = _first_coding(resource.get("vaccineCode"))
    when = resource.get("occurrenceDateTime")
    if coding is None or not isinstance(when, str):
        return None  # no product code or no date: nothing a verifier could rely on
    system, code = coding
    protocol = resource.get("protocolApplied")
    applied = protocol[0] if isinstance(protocol, list) and protocol and \
        isinstance(protocol[0], dict) else {}
    dose = applied.get("doseNumberPositiveInt")
    manufacturer = resource.get("manufacturer")
    if manufacturer is not None:  # SHC minimisation usually leaves it out
        manufacturer = _reference_text(manufacturer)
    return Vaccination(
        product=f"{system}#{code}",
        dose_number=dose if isinstance(dose, int) and not isinstance(dose, bool) else position,
        series_doses=applied.get("seriesDosesPositiveInt"),
        administered_on=when.split("T", 1)[0],
        disease="COVID-19" if system == CVX and code in _COVID_CVX else None,
        lot=resource.get("lotNumber"), manufacturer=manufacturer)


def _test_result(resource: dict) -> TestResult | None:
    if "valueCodeableConcept" not in resource:
        return None  # quantities (most of a lab panel) are never a qualitative COVID-19 result
    test = _first_coding(resource.get("code"))
    if test is None or test[0] != LOINC or test[1] not in _LOINC_TYPES:
        return None  # not a COVID-19 test we know: not evidence
    found = _first_coding(resource.get("valueCodeableConcept"))
    when = resource.get("effectiveDateTime")
    if found not in _RESULTS or not isinstance(when, str):
        return None
    performers = resource.get("performer")
    centre = _reference_text(performers[0]) if isinstance(performers, list) and performers \
        else None
    return TestResult(type=_LOINC_TYPES[test[1]], result=_RESULTS[found], sampled_at=when,
                      centre=centre, code=f"{LOINC}#{test[1]}")


def _first_coding(concept) -> tuple[str, str] | None:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return None
    for coding in concept["coding"]:
        if isinstance(coding, dict) and isinstance(coding.get("system"), str) \
                and isinstance(coding.get("code"), str):
            return coding["system"], coding["code"]
    return None


def _reference_text(reference) -> str | None:
    """A Reference's display, or its identifier value (SHC minimisation drops ids)."""
    if isinstance(reference, dict) and isinstance(reference.get("actor"), dict):
        reference = reference["actor"]
    if not isinstance(reference, dict):
        return None
    identifier = reference.get("identifier")
    display = reference.get("display")
    if isinstance(display, str):
        return display
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        return identifier["value"]
    return None


# -- record -> FHIR bundle ---------------------------------------------------------------------

def bundle_from_record(record: Record) -> dict:
    """The minimised FHIR bundle of a record: Patient, Immunizations, Observations."""
    evidence = record.evidence
    if not (evidence.vaccinations or evidence.tests):
        raise CodeError("policy_refused",
                        "an SMART Health Card must carry an immunization or a lab result")
    resources = [_patient(record.subject)]
    resources += [_immunization(v) for v in evidence.vaccinations]
    resources += [_observation(t) for t in evidence.tests]
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"resource:{i}", "resource": r}
                      for i, r in enumerate(resources)]}


def _patient(subject: Subject) -> dict:
    """A card with no holder name proves nothing at a checkpoint, and a masked name is not a
    name, so issuing needs the full name."""
    if subject.family_name or subject.given_name:
        name: dict = {}
        if subject.family_name:
            name["family"] = subject.family_name
        if subject.given_name:
            name["given"] = subject.given_name.split()
    elif subject.name:
        name = {"text": subject.name}
    else:
        raise CodeError("policy_refused", "an SMART Health Card names its holder; the record "
                                          "has no name")
    patient = {"resourceType": "Patient", "name": [name]}
    if subject.birth_date:
        patient["birthDate"] = subject.birth_date
    return patient


def _immunization(vaccination: Vaccination) -> dict:
    system, code = _product_coding(vaccination.product)
    resource = {"resourceType": "Immunization", "status": "completed",
                "vaccineCode": {"coding": [{"system": system, "code": code}]},
                "patient": {"reference": _PATIENT_REF},
                "occurrenceDateTime": vaccination.administered_on}
    if vaccination.lot:
        resource["lotNumber"] = vaccination.lot
    if vaccination.manufacturer:
        resource["manufacturer"] = {"display": vaccination.manufacturer}
    applied = {}
    if vaccination.dose_number >= 1:
        applied["doseNumberPositiveInt"] = vaccination.dose_number
    if vaccination.series_doses:
        applied["seriesDosesPositiveInt"] = vaccination.series_doses
    if applied:
        resource["protocolApplied"] = [applied]
    return resource


def _product_coding(product: str) -> tuple[str, str]:
    """``system#code`` as decoded, or an EU DCC product id we know the CVX code of."""
    system, sep, code = product.rpartition("#")
    if sep and system and code:
        return system, code
    if product in _EU_PRODUCT_CVX:
        return CVX, _EU_PRODUCT_CVX[product]
    raise CodeError("policy_refused", f"no SHC vaccine code is known for product {product!r}")


def _observation(test: TestResult) -> dict:
    if test.disease != "COVID-19":
        raise CodeError("policy_refused", f"only COVID-19 tests are mapped, not {test.disease}")
    if test.result not in _RESULT_CODES:  # "unknown": a result we cannot vouch for
        raise CodeError("policy_refused", f"an SHC test result cannot say {test.result!r}")
    resource = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": _test_loinc(test)}]},
                "subject": {"reference": _PATIENT_REF},
                "effectiveDateTime": format_time(test.sampled_at),
                "valueCodeableConcept": {"coding": [{"system": SNOMED,
                                                     "code": _RESULT_CODES[test.result]}]}}
    if test.centre:
        resource["performer"] = [{"display": test.centre}]
    return resource


def _test_loinc(test: TestResult) -> str:
    """The record's own LOINC code when it is one we would read back as the same type."""
    if test.code:
        system, _, code = test.code.rpartition("#")
        if system == LOINC and _LOINC_TYPES.get(code) == test.type:
            return code
        raise CodeError("policy_refused", f"test code {test.code!r} is not a known "
                                          f"{test.type} test")
    if test.type not in _DEFAULT_LOINC:
        raise CodeError("policy_refused", f"no LOINC code is known for a {test.type} test")
    return _DEFAULT_LOINC[test.type]


def _card_types(record: Record) -> list[str]:
    evidence = record.evidence
    types = [HEALTH_CARD]
    if evidence.vaccinations:
        types.append(_TYPE_IMMUNIZATION)
    if evidence.tests:
        types.append(_TYPE_LABORATORY)
    diseases = {v.disease for v in evidence.vaccinations} | {t.disease for t in evidence.tests}
    if diseases == {"COVID-19"}:
        types.append(_TYPE_COVID)
    return types


# -- issuing helpers ---------------------------------------------------------------------------

def _signing_key(signer: Signer):
    key = signer.private_key
    if signer.algorithm != "ES256" or not isinstance(key, ec.EllipticCurvePrivateKey) \
            or key.curve.name != "secp256r1":
        raise CodeError("policy_refused", "SMART Health Cards are signed with ES256 (P-256)")
    if not isinstance(signer.issuer, str) or not signer.issuer.startswith("https://") \
            or signer.issuer.endswith("/"):
        raise CodeError("policy_refused", "an SHC issuer is an https URL without a trailing /")
    return key


def _public_jwk(public_key) -> dict:
    numbers = public_key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big"))}


def _expiry(record: Record, at: datetime):
    """Carry the source record's validity end; never issue a card that is already over."""
    until = record.provenance.valid_until if record.provenance else None
    if until is None:
        return None
    if until <= at:
        raise CodeError("policy_refused", "the record's validity ended before issue")
    return _numeric_date(until)


def _numeric_date(dt: datetime):
    """Whole seconds as an int; milliseconds otherwise, like the spec's examples."""
    stamp = dt.timestamp()
    return int(stamp) if dt.microsecond == 0 else round(stamp, 3)


def _aware(at: datetime | None) -> datetime:
    if at is None:
        return utcnow()
    if at.tzinfo is None:
        return at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc)
