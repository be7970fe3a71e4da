"""X.509 certificates: DER, or PEM with one or more certificates (a CA bundle).

An EU DCC or ICAO document signer, or an ICAO CSCA; trusted for any scheme that finds it (the
adapters ask for signers by kid, CSCAs by subject). A PEM file with a certificate that neither
``cryptography`` nor the tolerant reader of :mod:`healthcode.certs` can read is refused whole.
"""
from __future__ import annotations

import base64
import re
from datetime import datetime, timezone

from ...certs import load_certificate
from ..lists import CertificateEntry, TrustList

FORMAT = "certificate"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def read(raw: bytes, **_) -> TrustList:
    if raw.lstrip().startswith(b"-----BEGIN"):
        blocks = _PEM.findall(raw)
        if not blocks:
            raise ValueError("a PEM file without a CERTIFICATE block")
        ders = []
        for n, block in enumerate(blocks):
            try:
                ders.append(base64.b64decode(b"".join(block.split()), validate=True))
            except ValueError:
                raise ValueError(f"certificate {n}: not base64") from None
    else:
        ders = [raw]
    trust_list = TrustList(format=FORMAT)
    now = datetime.now(timezone.utc)
    for n, der in enumerate(ders):
        try:
            cert = load_certificate(der)
        except ValueError as exc:
            raise ValueError(f"certificate {n}: {exc}") from None
        if cert.not_after < now:
            trust_list.notes.append(f"certificate {n} ({cert.subject}) expired "
                                    f"{cert.not_after:%Y-%m-%d}")
        trust_list.certificates.append(CertificateEntry(certificate=cert))
    return trust_list
