"""JWK helpers shared by the trust store, the key ring and the SHC adapter."""
from __future__ import annotations

import base64
import hashlib
import json


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 SHA-256 thumbprint of a public EC or RSA JWK, base64url-encoded."""
    kty = jwk.get("kty")
    if kty == "EC":
        members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    elif kty == "RSA":
        members = {k: jwk[k] for k in ("e", "kty", "n")}
    elif kty == "OKP":
        members = {k: jwk[k] for k in ("crv", "kty", "x")}
    else:
        raise ValueError(f"unsupported key type {kty!r}")
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


#: members that make a JWK private (RFC 7518): never kept, never exported
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: members each key type needs (RFC 7518 section 6)
REQUIRED_MEMBERS = {"EC": ("crv", "x", "y"), "RSA": ("n", "e"), "OKP": ("crv", "x")}


class UnusableKey(ValueError):
    """A well-formed JWK we cannot verify with (a symmetric or unknown key type, an unknown
    curve): skipped and reported, as pyjwt's PyJWKSet skips keys it cannot use."""


class CorruptKey(ValueError):
    """A JWK that is not what it claims to be (not an object, members missing or undecodable,
    a point off its curve): a list holding one is refused whole."""


def parse_public_jwk(member) -> tuple[dict, object, str | None]:
    """The public part of one JWK, its key object and algorithm.

    Raises :class:`UnusableKey` or :class:`CorruptKey` (both ``ValueError``).
    """
    import jwt
    from jwt.exceptions import PyJWKError

    if not isinstance(member, dict) or not isinstance(member.get("kty"), str):
        raise CorruptKey("a JWK is an object with a 'kty' member")
    kty = member["kty"]
    if kty not in REQUIRED_MEMBERS:
        raise UnusableKey(f"unsupported key type {kty!r}")
    missing = [m for m in REQUIRED_MEMBERS[kty] if not isinstance(member.get(m), str)]
    if missing:
        raise CorruptKey(f"{kty} JWK without {missing[0]!r}")
    public = {k: v for k, v in member.items() if k not in PRIVATE_MEMBERS}
    try:
        parsed = jwt.PyJWK(_full_length(public))
    except (PyJWKError, jwt.InvalidKeyError) as exc:
        if "crv" in str(exc).lower() or "unsupported" in str(exc).lower():
            raise UnusableKey(str(exc)) from None
        raise CorruptKey(f"undecodable {kty} JWK: {exc}") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptKey(f"undecodable {kty} JWK: {exc}") from None
    public["kid"] = public.get("kid") or jwk_thumbprint(public)
    return public, parsed.key, public.get("alg") or parsed.algorithm_name


EC_SIZES = {"P-256": 32, "P-384": 48, "P-521": 66, "secp256k1": 32}


def short_coordinates(jwk: dict) -> bool:
    """Whether an EC JWK's coordinates are shorter than its curve's size.

    RFC 7518 6.2.1.2 says they MUST be full length; some real SHC issuers (Epic installations
    in the VCI directory) drop a leading zero byte. The point is the same number, so the key is
    read left-padded (as the SMART Health Card Verifier's JOSE library reads it), while the JWK
    is kept as published, since its thumbprint (the SHC kid) was computed over that text.
    """
    size = EC_SIZES.get(jwk.get("crv")) if jwk.get("kty") == "EC" else None
    if size is None:
        return False
    try:
        return any(len(_b64url_decode(jwk[m])) < size for m in ("x", "y"))
    except (KeyError, ValueError, TypeError):
        return False


def _full_length(jwk: dict) -> dict:
    if not short_coordinates(jwk):
        return jwk
    size = EC_SIZES[jwk["crv"]]
    return {**jwk, **{m: b64url(_b64url_decode(jwk[m]).rjust(size, b"\0")) for m in ("x", "y")}}


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
