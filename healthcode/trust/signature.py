"""Signatures over trust lists: detached ones, and the primitives a master list's CMS uses.

A detached signature (``healthcode trust import LIST --signature SIG --signer CERT``) is checked
against the configured signer certificate before anything of the list is read:

- ECDSA: the signature is DER (``openssl dgst -sign``) or raw ``r || s``, possibly base64; the
  hash follows the curve (P-256: SHA-256, P-384: SHA-384, P-521: SHA-512), which is what the
  VCI directory uses for its snapshot (P-521 with SHA-512: ``openssl dgst -sha512 -verify``).
- RSA: PKCS #1 v1.5 with SHA-256.

A bad signature raises :class:`~healthcode.errors.TrustSignatureError`: nothing is imported.
"""
from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..certs import Certificate, load_certificate
from ..errors import TrustSignatureError

HASHES = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
          "sha384": hashes.SHA384, "sha512": hashes.SHA512}
#: the hash an ECDSA key of this size signs with (SEC 1 / RFC 5480 pairing)
CURVE_HASHES = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512, 512: hashes.SHA512}


def load_signer(data: bytes) -> Certificate:
    """The configured signer certificate (PEM or DER)."""
    try:
        return load_certificate(data)
    except ValueError as exc:
        raise TrustSignatureError(f"the signer certificate is unreadable: {exc}") from None


def verify_detached(data: bytes, signature: bytes, signer: Certificate) -> None:
    """Check a detached signature over ``data``; raise ``TrustSignatureError`` if it fails."""
    key = signer.public_key
    candidates = _signature_forms(signature.strip(), key)
    for candidate in candidates:
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(candidate, data, ec.ECDSA(CURVE_HASHES[key.curve.key_size]()))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(candidate, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                raise TrustSignatureError("the signer's key is neither ECDSA nor RSA")
            return
        except (InvalidSignature, ValueError, KeyError):
            continue
    raise TrustSignatureError(f"the detached signature does not verify with the certificate "
                              f"of {signer.subject} (SHA-256 {signer.sha256.hex()[:16]}...)")


def _signature_forms(signature: bytes, key) -> list[bytes]:
    """The signature as given, base64-decoded if it is text, raw ``r||s`` re-encoded as DER."""
    forms = [signature]
    try:
        forms.append(base64.b64decode(signature, validate=True))
    except (binascii.Error, ValueError):
        pass
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        for form in list(forms):
            if len(form) == 2 * size:
                forms.append(encode_dss_signature(int.from_bytes(form[:size], "big"),
                                                  int.from_bytes(form[size:], "big")))
    return forms


def verify_with_key(key, signature: bytes, data: bytes, hash_name: str, *,
                    pss_salt: int | None = None) -> bool:
    """One signature check as CMS and X.509 make them (ECDSA, RSA PKCS #1 v1.5 or PSS)."""
    algorithm = HASHES[hash_name]()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            pad = (padding.PSS(mgf=padding.MGF1(HASHES[hash_name]()), salt_length=pss_salt)
                   if pss_salt is not None else padding.PKCS1v15())
            key.verify(signature, data, pad, algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def digest(hash_name: str, data: bytes) -> bytes:
    return hashlib.new(hash_name, data).digest()
