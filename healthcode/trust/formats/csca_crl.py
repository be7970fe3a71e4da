"""X.509 CRLs of ICAO CSCAs (Doc 9303 part 12, section 7.1.4), DER or PEM.

Every state publishes its CSCA's CRL (ICAO PKD, national sites); a document signer it lists is
refused as ``revoked``. The CRL is imported only when a CSCA we already trust (in the data dir,
or ``--signer``) issued it and its signature verifies: a CRL from anyone else could only be a
mistake or an attack. The source's age is the CRL's ``thisUpdate``; a CRL past ``nextUpdate``
is kept (its revocations still hold) and reported.
"""
from __future__ import annotations

from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ...certs import Certificate
from ...errors import TrustSignatureError
from ..lists import CertificateRevocations, TrustList

FORMAT = "csca-crl"


def detect(raw: bytes) -> bool:
    if raw.lstrip().startswith(b"-----BEGIN X509 CRL"):
        return True
    return _load(raw) is not None


def _load(raw: bytes):
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(raw)
        return x509.load_der_x509_crl(raw)
    except ValueError:
        return None


def read(raw: bytes, *, anchors: tuple[Certificate, ...] = (), trusted=(), **_) -> TrustList:
    crl = _load(raw)
    if crl is None:
        raise ValueError("not an X.509 CRL")
    issuer = crl.issuer.rfc4514_string()
    candidates = [c for c in (*anchors, *trusted) if c.subject == issuer]
    if not candidates:
        raise TrustSignatureError(f"no trusted CSCA {issuer} issued this CRL: trust the CSCA "
                                  f"first (its master list or certificate), or name it with "
                                  f"--signer")
    if not any(_signed_by(crl, c) for c in candidates):
        raise TrustSignatureError(f"the CRL's signature does not verify with the CSCA {issuer}")
    this_update = crl.last_update_utc
    next_update = crl.next_update_utc
    trust_list = TrustList(format=FORMAT, retrieved_at=this_update, signed_by=issuer)
    if next_update is not None and next_update < datetime.now(timezone.utc):
        trust_list.notes.append(f"past its nextUpdate {next_update:%Y-%m-%d}: fetch a fresh CRL "
                                f"(its revocations still apply)")
    trust_list.crls.append(CertificateRevocations(
        issuer=issuer, serials=frozenset(r.serial_number for r in crl),
        this_update=this_update, next_update=next_update,
        der=crl.public_bytes(serialization.Encoding.DER)))
    return trust_list


def _signed_by(crl, csca: Certificate) -> bool:
    try:
        return crl.is_signature_valid(csca.public_key)
    except (TypeError, ValueError):
        return False
