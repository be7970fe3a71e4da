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


def signed_claims(ring, body: dict, **header) -> str:
    """Exactly these claims, signed with our active key (times and all, however absurd)."""
    import jwt
    key = ring.active
    return jwt.encode(body, key.private_key, algorithm="ES256",
                      headers={"kid": key.kid, "typ": None, **header})


def forged_with_header(ring, header: dict, **kw) -> str:
    """Our kid, the given extra header fields, a signature of 64 zero bytes."""
    head = b64(json.dumps({"alg": "ES256", "kid": ring.active.kid, **header}).encode())
    return f"{head}.{b64(json.dumps(claims(**kw)).encode())}.{b64(bytes(64))}"


def nested(depth: int, leaf="x") -> object:
    """``[[[...leaf...]]]`` ``depth`` lists deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_json_text(depth: int) -> str:
    """The JSON text of :func:`nested`, without asking json.dumps to recurse that deep."""
    return "[" * depth + '"x"' + "]" * depth
