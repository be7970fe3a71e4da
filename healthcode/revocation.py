"""Revoking one-shot codes, online and offline, by the hash of their signature.

A one-shot code (``POST /api/v1/codes``) lives for up to 30 days, so an authority must be able
to withdraw one. A revoked code then verifies as ``revoked`` online, and the trust bundle
lists it so an offline scanner refuses it too. Dynamic resident codes need no list: they expire
within minutes, and a status change already supersedes them.

The list names a code the way the EU DCC revocation design does with its SIGNATURE hash type
(as reference verifiers compute it, e.g. the Corona-Warn-App's revocation calculation): the
first 16 bytes of the SHA-256 of the signature, written in base64 (standard alphabet, padded:
24 characters), as
:func:`healthcode.trust.bundle.signature_hash` computes it for the bundle. The bytes hashed
are, precisely:

- native code and any compact JWS (ES256): the base64url-decoded third segment is the 64-byte
  raw ``r || s`` (RFC 7515, RFC 7518 section 3.4); the hash covers ``r``, its first 32 bytes;
- EU DCC (``HC1:``): the fourth element of the COSE_Sign1 array; for ES256 (COSE alg -7) its
  first half ``r``, for RSA (PS256) the whole signature.

Only ``r`` for ECDSA, as the EU design says, because ECDSA signatures are malleable: ``(r, n -
s)`` verifies as well as ``(r, s)``, so a hash over ``s`` too would let anyone turn a revoked
code into one the list does not name without any key. The list reveals nothing about the
holder: a hash of a signature is not a hash of anything the holder chose or shows elsewhere.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone

from flask import current_app

from . import tokens
from .errors import CodeError, InvalidField
from .record import format_time
from .residents import ONE_SHOT_VERSION, get_ring
from .store import get_store
from .trust.bundle import signature_hash


def jws_signature(token: str) -> bytes:
    """The signature bytes of a compact JWS: its third segment, base64url-decoded."""
    try:
        segment = token.strip().split(".")[2]
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (IndexError, ValueError, binascii.Error):
        raise CodeError("malformed", "not a signed code") from None


def native_hash(token: str) -> str:
    """The SIGNATURE hash (base64) of one of our codes (ES256: over ``r``)."""
    return signature_hash(jws_signature(token), ecdsa=True)


def is_revoked(token: str) -> bool:
    """Whether a native code's signature is on the revocation list (one GET)."""
    return get_store().is_revoked(native_hash(token))


def revoke(text, actor: str) -> dict:
    """Revoke one of our one-shot codes; revoking it again changes nothing.

    Only a code that verifies as one of ours is accepted: the list is public and travels in
    every bundle, so it holds hashes of codes we issued and nothing else (a typo or a foreign
    code is refused with its reason, not listed).
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidField("code", "required")
    config = current_app.config
    if len(text) > config["MAX_CODE_LENGTH"]:
        raise InvalidField("code", "longer than any code of ours")
    token = text.strip()
    if not tokens.looks_native(token):
        # a code of another scheme, or no code at all: a code that is not one of ours (422,
        # as for one that fails), not a malformed request
        raise CodeError("unsupported_scheme",
                        "only one-shot codes of this service can be revoked here")
    claims = tokens.verify(token, get_ring(), issuer=config["ISSUER"], skew=config["CLOCK_SKEW"],
                           max_length=config["MAX_CODE_LENGTH"])  # CodeError -> 422 + reason
    if claims.status_version != ONE_SHOT_VERSION:
        raise InvalidField("code", "a resident's dynamic code expires within minutes: change "
                                   "the resident's status instead")
    digest = native_hash(token)
    get_store().revoke_code(digest, int(claims.expires_at.timestamp()))
    get_store().audit("code_revoke", actor=actor, hash=digest)
    return {"revoked": True, "hash": digest, "hash_type": "SIGNATURE",
            "expires_at": format_time(claims.expires_at)}


def current_hashes(now: datetime | None = None) -> list[str]:
    """The revocation hashes (base64) of every revoked code not yet expired, as the bundle
    lists them (:func:`healthcode.recognition.get_bundle` reads the same store method)."""
    at = (now or datetime.now(timezone.utc)).timestamp()
    return get_store().revoked_signature_hashes(at)
