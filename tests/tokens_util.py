"""Crafting codes the way an attacker or a broken issuer would, for the rejection tables."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from healthcode import tokens


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(sub="AAAAAAAAAAAAAAAA", status="green", sv=1, iss="HC-TEST", iat=None, ttl=300,
           nm="陳*文"):
    iat = int(time.time()) if iat is None else iat
    return {"iss": iss, "sub": sub, "st": status, "sv": sv, "iat": iat, "exp": iat + ttl,
            "nm": nm}


def signed(ring, **kw) -> str:
    key = ring.active
    return tokens.encode_claims(claims(**kw), key.private_key, key.kid)


def signed_with_new_key(kid: str, **kw) -> str:
    return tokens.encode_claims(claims(**kw), ec.generate_private_key(ec.SECP256R1()), kid)


def unsigned(ring, **kw) -> str:
    header = b64(json.dumps({"alg": "none", "kid": ring.active.kid}).encode())
    return f"{header}.{b64(json.dumps(claims(**kw)).encode())}."


def hs256_with_public_key(ring, **kw) -> str:
    """The classic algorithm-confusion attack: HMAC keyed with the verifier's public key."""
    pem = ring.active.public_key.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "kid": ring.active.kid}).encode())
    body = b64(json.dumps(claims(**kw)).encode())
    mac = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


def tampered(token: str) -> str:
    """Flip the status inside a validly signed token, keeping the signature."""
    header, body, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["st"] = "green" if data["st"] != "green" else "red"
    return f"{header}.{b64(json.dumps(data, separators=(',', ':')).encode())}.{sig}"


def truncated_signature(token: str) -> str:
    """Keep 64 of the 86 signature characters: valid base64url, 48 bytes instead of 64."""
    header, body, sig = token.split(".")
    return f"{header}.{body}.{sig[:64]}"
