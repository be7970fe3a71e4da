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
