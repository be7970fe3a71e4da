"""The EU DCC decoding chain up to a verified COSE signature, one step per function.

``HC1:`` prefix, base45, zlib, COSE_Sign1 (RFC 9052) and its signature with a DSC's key; each
step raises :class:`~mapping.base.CodeError` with ``step`` in its detail, so a failure can be
traced to the link that broke (the choices each step makes are in :mod:`mapping.eu_dcc`).
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from typing import NamedTuple

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from healthcode.certs import Certificate

from ..b45 import b45decode as _b45decode
from ..base import CodeError

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

TAG_CWT = 61
TAG_COSE_SIGN1 = 18
#: The tag chains a COSE_Sign1 arrives in: untagged, tag 18, or tag 18 inside CWT tag 61.
_TAG_CHAINS = frozenset({(), (TAG_COSE_SIGN1,), (TAG_CWT, TAG_COSE_SIGN1)})
#: ... and one that real encoders produced: CWT tag 61 straight around an untagged message.
_TAG_CHAIN_CWT_ONLY = (TAG_CWT,)

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
