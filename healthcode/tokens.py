"""The native code: a compact ES256 JWT carrying only what a checkpoint needs.

Claims (short private names, because every byte makes the QR code denser):

======  ===========================================
``iss``  our issuer id
``sub``  subject id (keyed hash of the identity document)
``st``   status: green, yellow or red
``sv``   status version: bumped by every status change
``nm``   masked name
``iat``  issued at (POSIX seconds)
``exp``  expiry (POSIX seconds)
======  ===========================================

Verification follows pyjwt's order: the algorithm must be on the allow-list before any key is
chosen, the key is chosen by ``kid`` from our ring, then the signature, issuer and validity
window are checked. A header naming critical extensions (``crit``) is refused outright: RFC 7515
§4.1.11 makes a JWS invalid when it names an extension the verifier does not understand, and the
native scheme defines none.

A native code may not outlive the lifetime we issue for (:func:`max_lifetime`): a resident's
dynamic code ``CODE_TTL`` (or, where conversion agreements exist, what they let a converted code
live: :func:`healthcode.recognition.native_lifetime`), a one-shot code (status version 0) at
most :data:`MAX_ONE_SHOT_TTL`, each plus the clock skew. A longer-lived code under our
signature is not one we issued by the rules (a bug or a leaked key), so it is ``malformed``,
however good its signature.

Every failure becomes a :class:`~healthcode.errors.CodeError` with a reason from the contract
vocabulary. Times are checked here, not by pyjwt, so that a verifier can be
asked about any instant (``healthcode verify --at``).
"""
from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone

import jwt
from jwt.exceptions import InvalidAlgorithmError, InvalidSignatureError, PyJWTError

from .errors import CodeError
from .keys import KeyRing
from .record import STATUSES

ALGORITHMS = ["ES256"]
_JWS = jwt.PyJWS(algorithms=ALGORITHMS)

#: Bytes a version-12 QR code holds at error correction M: the size budget of a native code.
#: Version 12 (65x65 modules) still scans fast from a cracked phone screen at a gate.
MAX_CODE_BYTES = 287
_SIGNATURE_CHARS = 86  # base64url of a 64-byte ES256 signature

#: One-shot codes carry status version 0: they are tied to no enrolled status.
ONE_SHOT_VERSION = 0
#: The longest a one-shot code lives (``POST /api/v1/codes`` and ``healthcode issue`` refuse a
#: longer ``ttl``): a paper code for a journey of up to a month.
MAX_ONE_SHOT_TTL = 30 * 86400
#: The longest a native code converted from a partner's code lives (conversion caps it here;
#: the agreement's max_validity_hours may cap it sooner).
MAX_CONVERTED_TTL = 30 * 86400
#: The longest an enrolled subject's code may live when the verifier does not know the issuer's
#: configuration (an offline scanner holding only our keys): a converted code's bound.
MAX_DYNAMIC_TTL = MAX_CONVERTED_TTL
#: Times beyond 9999-12-31 (or before 1970) are not times a code of ours can carry.
_MAX_TIME = 253402300799


class _CompactJSON(json.JSONEncoder):
    """UTF-8 instead of ``\\uXXXX`` escapes: a Chinese character costs 3 bytes, not 6."""

    def __init__(self, *args, **kwargs):
        kwargs["ensure_ascii"] = False
        super().__init__(*args, **kwargs)


@dataclass(frozen=True)
class NativeClaims:
    issuer: str
    subject_id: str
    status: str
    status_version: int
    masked_name: str | None
    issued_at: datetime
    expires_at: datetime
    kid: str


def sign(ring: KeyRing, *, issuer: str, subject_id: str, status: str, status_version: int,
         masked_name: str | None, issued_at: datetime, ttl: int) -> str:
    """Sign a native code with the ring's active key."""
    return issue(ring, issuer=issuer, subject_id=subject_id, status=status,
                 status_version=status_version, masked_name=masked_name, issued_at=issued_at,
                 ttl=ttl)[0]


def issue(ring: KeyRing, *, issuer: str, subject_id: str, status: str, status_version: int,
          masked_name: str | None, issued_at: datetime, ttl: int) -> tuple[str, NativeClaims]:
    """Sign a native code; return it with the claims exactly as signed."""
    key = ring.active
    iat = int(issued_at.timestamp())
    claims = {"iss": issuer, "sub": subject_id, "st": status, "sv": status_version,
              "iat": iat, "exp": iat + int(ttl)}
    if masked_name:
        claims["nm"] = fit_masked_name(claims, masked_name, kid=key.kid)
    token = encode_claims(claims, key.private_key, key.kid)
    return token, NativeClaims(
        issuer=issuer, subject_id=subject_id, status=status, status_version=status_version,
        masked_name=claims.get("nm"), issued_at=datetime.fromtimestamp(iat, timezone.utc),
        expires_at=datetime.fromtimestamp(claims["exp"], timezone.utc), kid=key.kid)


def encode_claims(claims: dict, private_key, kid: str) -> str:
    """Sign claims as a compact ES256 JWS, without a ``typ`` header (every byte counts)."""
    return jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": kid, "typ": None},
                      json_encoder=_CompactJSON)


def encoded_length(claims: dict, kid: str) -> int:
    """The length of the signed code, computed without signing."""
    header = json.dumps({"alg": "ES256", "kid": kid}, separators=(",", ":"))
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False)
    return _b64len(len(header.encode())) + 1 + _b64len(len(payload.encode())) + 1 + \
        _SIGNATURE_CHARS


def fit_masked_name(claims: dict, masked_name: str, kid: str) -> str:
    """Shorten a long masked name so the code stays within :data:`MAX_CODE_BYTES`.

    The staff compare the masked name with a face and a document; its first characters carry
    that, so the tail is cut and marked with "…". The full masked name is still in the API's
    answers, which read it from the store.
    """
    name = masked_name
    while True:
        if encoded_length({**claims, "nm": name}, kid) <= MAX_CODE_BYTES or len(name) <= 2:
            return name
        name = name[:-2] + "…"  # drops one character, or two the first time


def _b64len(n: int) -> int:
    return (4 * n + 2) // 3


def looks_native(text: str) -> bool:
    """A compact JWS with three base64url parts (no scheme prefix)."""
    return text.count(".") == 2 and text[:2] == "ey"


def max_lifetime(status_version: int, dynamic_lifetime: int | None = None) -> int:
    """The longest a native code of this status version may live, in seconds.

    :param dynamic_lifetime: the longest an enrolled subject's code lives (status version 1 and
        up): ``CODE_TTL``, or longer where conversion agreements issue longer-lived codes;
        unknown (an offline scanner holding only our keys): :data:`MAX_DYNAMIC_TTL`
    """
    if status_version == ONE_SHOT_VERSION:
        return MAX_ONE_SHOT_TTL
    return MAX_DYNAMIC_TTL if dynamic_lifetime is None else int(dynamic_lifetime)


def _json_segment(segment: str):
    """A base64url JSON segment; ``None`` if it is not one (or nests deeper than the parser
    goes: a hostile code's ``RecursionError`` is as malformed as a syntax error)."""
    try:
        return json.loads(jwt.api_jws.base64url_decode(segment))
    except (ValueError, TypeError, binascii.Error, RecursionError):
        return None


def read_header(token) -> tuple[str, str]:
    """The ``kid`` of a compact JWS whose ``alg`` is on the allow-list, before any key is used.

    Only the header segment is decoded here (pyjwt's ``get_unverified_header`` would decode and
    check all three, and :func:`verified_claims` does that again anyway): on the verify hot path
    that is a third of the work. pyjwt's ``decode`` then re-reads the header strictly and checks
    ``alg`` against the allow-list itself, so this early read only chooses the key.
    """
    if not isinstance(token, str) or "." not in token:
        raise CodeError("malformed", "not a signed code")
    header = _json_segment(token[:token.index(".")])
    if not isinstance(header, dict):
        raise CodeError("malformed", "not a signed code")
    if "crit" in header:
        raise CodeError("malformed", "the code names critical extensions; we understand none")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise CodeError("bad_signature", f"algorithm {alg!r} is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CodeError("unknown_key", "the code names no key")
    return alg, kid


def unverified_claims(token: str) -> dict:
    """The claims before the signature is checked: only to find which issuer's keys to use."""
    parts = token.split(".") if isinstance(token, str) else ()
    claims = _json_segment(parts[1]) if len(parts) == 3 else None
    if not isinstance(claims, dict):
        raise CodeError("malformed", "the claims are not an object")
    return claims


def verified_claims(token: str, public_key) -> dict:
    """Check the ES256 signature with ``public_key`` and return the claims."""
    try:
        payload = _JWS.decode(token, public_key, algorithms=ALGORITHMS)
    except InvalidSignatureError:
        raise CodeError("bad_signature", "the signature does not match") from None
    except InvalidAlgorithmError:
        raise CodeError("bad_signature", "the algorithm is not accepted") from None
    except (PyJWTError, ValueError, TypeError, RecursionError):
        # the rest of pyjwt's tree (a bad crit, a b64 extension, a bad segment), and what it
        # lets escape from outside it on hostile headers: the code is unreadable
        raise CodeError("malformed", "not a signed code") from None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        raise CodeError("malformed", "the claims are not JSON") from None


def check_length(token, max_length: int) -> str:
    if not isinstance(token, str):
        raise CodeError("malformed", "the code is not text")
    if len(token) > max_length:
        raise CodeError("too_large", f"the code is longer than {max_length} characters")
    return token.strip()


def verify(token, ring: KeyRing, *, issuer: str, at: datetime | None = None, skew: int = 60,
           max_length: int = 4096, dynamic_lifetime: int | None = None) -> NativeClaims:
    """Check a native code against our own key ring; raise :class:`CodeError` if it fails.

    :param dynamic_lifetime: the longest our enrolled subjects' codes live, see
        :func:`max_lifetime`
    """
    token = check_length(token, max_length)
    _, kid = read_header(token)
    key = ring.verification_key(kid)
    if key is None:
        raise CodeError("unknown_key", "the code is signed with a key we do not know")
    claims = verified_claims(token, key.public_key)
    return check_claims(claims, kid, issuer=issuer, at=at, skew=skew,
                        dynamic_lifetime=dynamic_lifetime)


def check_claims(claims, kid: str, *, issuer: str, at: datetime | None,
                 skew: int, dynamic_lifetime: int | None = None) -> NativeClaims:
    if not isinstance(claims, dict):
        raise CodeError("malformed", "the claims are not an object")
    try:
        iss, sub, st, sv = claims["iss"], claims["sub"], claims["st"], claims["sv"]
        iat, exp = claims["iat"], claims["exp"]
    except KeyError as missing:
        raise CodeError("malformed", f"claim {missing.args[0]} is missing") from None
    nm = claims.get("nm")
    if not (isinstance(sub, str) and st in STATUSES and _is_int(sv) and _is_int(iat)
            and _is_int(exp) and (nm is None or isinstance(nm, str))):
        raise CodeError("malformed", "a claim has the wrong type")
    if iss != issuer and not (isinstance(issuer, (set, frozenset, tuple, list))
                              and iss in issuer):
        raise CodeError("untrusted_issuer", "the code was issued by someone else")
    if not (0 <= iat <= _MAX_TIME and 0 <= exp <= _MAX_TIME):
        raise CodeError("malformed", "a time claim is out of range")
    if exp < iat:
        raise CodeError("malformed", "the code expires before it was issued")
    if exp - iat > max_lifetime(sv, dynamic_lifetime) + skew:
        raise CodeError("malformed", "the code claims a longer life than a native code has")
    now = (at or datetime.now(timezone.utc)).timestamp()
    if iat > now + skew:
        raise CodeError("not_yet_valid", "the code is not valid yet")
    if exp <= now - skew:
        raise CodeError("expired", "the code has expired")
    return NativeClaims(issuer=iss, subject_id=sub, status=st, status_version=sv, masked_name=nm,
                        issued_at=datetime.fromtimestamp(iat, timezone.utc),
                        expires_at=datetime.fromtimestamp(exp, timezone.utc), kid=kid)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
