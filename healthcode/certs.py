"""X.509 signer certificates as health-code schemes really ship them.

Real document signer certificates are not always strict DER: some encode default values
(BasicConstraints CA=FALSE), an empty extended-key-usage list, or NULL parameters in an ECDSA
algorithm identifier. Recent ``cryptography`` refuses parts of those, so this module reads what
it can with ``cryptography`` and falls back to a tolerant ASN.1 reader (pyasn1) for the rest.
A certificate that neither can read raises ``ValueError``.
"""
from __future__ import annotations

import functools
import hashlib
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID


@dataclass(frozen=True)
class Certificate:
    """The parts of a signer or CA certificate a verifier needs."""

    der: bytes
    public_key: object
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    #: extended key usage OIDs as dotted strings; ``None`` when the extension is absent
    extended_key_usage: tuple[str, ...] | None
    san_uris: tuple[str, ...]
    #: the parsed ``cryptography`` object, when ``cryptography`` could read the whole thing
    parsed: x509.Certificate | None

    @functools.cached_property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.der).digest()

    @property
    def dcc_kid(self) -> bytes:
        """EU DCC key identifier: the first 8 bytes of SHA-256 over the DER certificate."""
        return self.sha256[:8]

    @functools.cached_property
    def serial_number(self) -> int:
        """The serial number, which a CA's CRL names revoked certificates by."""
        if self.parsed is not None:
            return self.parsed.serial_number
        return int(_decode_tolerant(self.der)["tbsCertificate"]["serialNumber"])

    @property
    def country(self) -> str | None:
        """The subject's country (``C=``), as EU DCC and ICAO signers must carry it."""
        for part in self.subject.split(","):
            name, _, value = part.partition("=")
            if name.strip() == "C" and value:
                return value.strip().upper()
        return None

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after

    def public_key_spki(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_certificate(data: bytes) -> Certificate:
    """Read a DER or PEM certificate, tolerating the encodings real signers use."""
    if data.lstrip().startswith(b"-----BEGIN"):
        der = _pem_to_der(data)
    else:
        der = bytes(data)
    return _load_der(der)


#: trust lists repeat each other (every DSC of the Swedish list is in the German one), and a
#: Certificate is immutable: read each DER once
CACHE_SIZE = 4096


@functools.lru_cache(maxsize=CACHE_SIZE)
def _load_der(der: bytes) -> Certificate:
    with warnings.catch_warnings():
        # NULL ECDSA parameters parse with a deprecation warning; we accept those certificates.
        warnings.simplefilter("ignore")
        try:
            cert = x509.load_der_x509_certificate(der)
        except Exception:  # any refusal: the tolerant reader below gets its turn
            cert = None
        if cert is not None:
            try:
                return _from_cryptography(der, cert)
            except Exception:  # e.g. UnsupportedAlgorithm for an unusual key: try pyasn1
                pass
    try:
        return _from_pyasn1(der)
    except ValueError:
        raise
    except Exception as exc:  # pyasn1 and cryptography raise their own trees on broken input
        raise ValueError(f"unreadable certificate: {type(exc).__name__}: {exc}") from exc


def _pem_to_der(data: bytes) -> bytes:
    try:
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    except ValueError:
        import base64
        body = b"".join(line for line in data.splitlines()
                        if line and not line.startswith(b"-----"))
        return base64.b64decode(body)


def _from_cryptography(der: bytes, cert: x509.Certificate) -> Certificate:
    public_key = cert.public_key()
    eku = None
    sans: tuple[str, ...] = ()
    try:
        extensions = cert.extensions
    except ValueError:
        # cryptography refuses the extension block (non-DER encodings): read it tolerantly.
        eku, sans = _extensions_pyasn1(der)
    else:
        try:
            eku = tuple(o.dotted_string for o in
                        extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value)
        except x509.ExtensionNotFound:
            eku = None
        try:
            san = extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
            sans = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        except x509.ExtensionNotFound:
            sans = ()
    return Certificate(
        der=der, public_key=public_key, subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        extended_key_usage=eku, san_uris=sans, parsed=cert)


def _decode_tolerant(der: bytes):
    from pyasn1.codec.ber import decoder
    from pyasn1_modules import rfc5280

    try:
        cert, _ = decoder.decode(der, asn1Spec=rfc5280.Certificate())
    except Exception as exc:  # pyasn1 raises its own PyAsn1Error tree and more
        raise ValueError(f"unreadable certificate: {exc}") from exc
    return cert


def _extensions_pyasn1(der: bytes):
    from pyasn1.codec.ber import decoder
    from pyasn1_modules import rfc5280

    tbs = _decode_tolerant(der)["tbsCertificate"]
    eku = None
    sans: list[str] = []
    if tbs["extensions"].isValue:
        for ext in tbs["extensions"]:
            oid = str(ext["extnID"])
            value = bytes(ext["extnValue"])
            try:
                if oid == "2.5.29.37":
                    seq, _ = decoder.decode(value, asn1Spec=rfc5280.ExtKeyUsageSyntax())
                    eku = tuple(str(o) for o in seq)
                elif oid == "2.5.29.17":
                    names, _ = decoder.decode(value, asn1Spec=rfc5280.SubjectAltName())
                    for name in names:
                        if name.getName() == "uniformResourceIdentifier":
                            sans.append(str(name["uniformResourceIdentifier"]))
            except Exception as exc:
                if oid == "2.5.29.37":
                    # An EKU extension that holds no OIDs at all (seen in test DSCs) means
                    # "no restriction", like an absent one would.
                    if value in (b"\x30\x00",):
                        eku = ()
                        continue
                    raise ValueError(f"unreadable extended key usage: {exc}") from exc
    return eku, tuple(sans)


def _from_pyasn1(der: bytes) -> Certificate:
    from pyasn1.codec.der import encoder

    cert = _decode_tolerant(der)
    tbs = cert["tbsCertificate"]
    spki = encoder.encode(tbs["subjectPublicKeyInfo"])
    try:
        public_key = serialization.load_der_public_key(spki)
    except ValueError as exc:
        raise ValueError(f"unsupported public key in certificate: {exc}") from exc
    eku, sans = _extensions_pyasn1(der)
    return Certificate(
        der=der, public_key=public_key, subject=_name_text(tbs["subject"]),
        issuer=_name_text(tbs["issuer"]),
        not_before=_time(tbs["validity"]["notBefore"]),
        not_after=_time(tbs["validity"]["notAfter"]),
        extended_key_usage=eku, san_uris=sans, parsed=None)


def _time(value) -> datetime:
    choice = value.getName()
    dt = value[choice].asDateTime
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


_NAME_OIDS = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.10": "O", "2.5.4.11": "OU",
              "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.5": "serialNumber"}


def _name_text(name) -> str:
    """An RFC 4514-style string of a pyasn1 Name, most specific attribute first."""
    from pyasn1.codec.ber import decoder

    parts = []
    for rdn in name[0]:
        for atv in rdn:
            oid = str(atv["type"])
            try:
                value, _ = decoder.decode(bytes(atv["value"]))
                text = str(value)
            except Exception:
                text = bytes(atv["value"]).hex()
            parts.append(f"{_NAME_OIDS.get(oid, oid)}={text}")
    return ",".join(reversed(parts))
