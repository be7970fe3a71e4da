"""Revoking one-shot codes, online and offline, by the hash of their signature.

A one-shot code (``POST /api/v1/codes``) lives for up to 30 days, so an authority must be able
to withdraw one. A revoked code then verifies as ``revoked`` online, and the trust bundle
lists it so an offline scanner refuses it too. Dynamic resident codes need no list: they expire
within minutes, and a status change already supersedes them.

The list names a code the way the EU DCC revocation design does with its SIGNATURE hash type
(eHealth Network, "Value Sets and revocation", hash type SIGNATURE): the first 16 bytes of the
SHA-256 of the signature bytes, written in base64 (standard alphabet, padded: 24 characters).
The signature bytes are, precisely:

- native code and any compact JWS (ES256): the base64url-decoded third segment, i.e. the
  64-byte raw ``r || s`` (RFC 7515, 7518 section 3.4);
- EU DCC (``HC1:``): the fourth element of the COSE_Sign1 array, as carried (for ES256 the
  64-byte ``r || s``; the design names exactly these bytes).

The list reveals nothing about the holder: a hash of a signature is not a hash of anything the
holder chose or shows elsewhere, and 16 bytes of a 256-bit hash still do not collide.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timezone

from flask import current_app

from . import tokens
from .errors import CodeError, InvalidField
from .record import format_time
from .residents import ONE_SHOT_VERSION, get_ring
from .store import get_store

HASH_BYTES = 16


def jws_signature(token: str) -> bytes:
    """The signature bytes of a compact JWS: its third segment, base64url-decoded."""
    try:
        segment = token.strip().split(".")[2]
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (IndexError, ValueError, binascii.Error):
        raise CodeError("malformed", "not a signed code") from None


def signature_hash(signature: bytes) -> bytes:
    """The SIGNATURE hash of the EU DCC revocation design: SHA-256, first 16 bytes."""
    return hashlib.sha256(signature).digest()[:HASH_BYTES]


def encoded(digest: bytes) -> str:
    """The hash as the bundle lists it (base64, padded)."""
    return base64.b64encode(digest).decode("ascii")


def native_hash(token: str) -> bytes:
    return signature_hash(jws_signature(token))


def is_revoked(token: str) -> bool:
    """Whether a native code's signature is on the revocation list (one GET)."""
    return get_store().is_revoked(native_hash(token))


def revoke(text, actor: str) -> dict:
    """Revoke one of our one-shot codes; revoking it again changes nothing.

    Only a code that verifies as ours is accepted: a hash list is public, and letting anyone's
    bytes in would let an authority's typo revoke someone else's code by accident no more than
    it would fill the bundle with noise.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidField("code", "required")
    config = current_app.config
    if len(text) > config["MAX_CODE_LENGTH"]:
        raise InvalidField("code", "longer than any code of ours")
    token = text.strip()
    if not tokens.looks_native(token):
        raise InvalidField("code", "only one-shot codes of this service can be revoked here")
    claims = tokens.verify(token, get_ring(), issuer=config["ISSUER"], skew=config["CLOCK_SKEW"],
                           max_length=config["MAX_CODE_LENGTH"])  # CodeError -> 422 + reason
    if claims.status_version != ONE_SHOT_VERSION:
        raise InvalidField("code", "a resident's dynamic code expires within minutes: change "
                                   "the resident's status instead")
    digest = native_hash(token)
    get_store().revoke_code(digest, int(claims.expires_at.timestamp()))
    get_store().audit("code_revoke", actor=actor, hash=encoded(digest))
    return {"revoked": True, "hash": encoded(digest), "hash_type": "SIGNATURE",
            "expires_at": format_time(claims.expires_at)}


def current_hashes(now: datetime | None = None) -> list[str]:
    """The revocation hashes (base64) of every revoked code not yet expired: for the bundle."""
    at = (now or datetime.now(timezone.utc)).timestamp()
    return get_store().revoked_codes(at)
