"""EU DCC document signer lists in the JSON shape of national backends and the SDKs.

``{"certificates": [{"kid", "rawData", "country"?, "certificateType"?, "thumbprint"?,
"signature"?, "timestamp"?}]}``: the German backend's DSC list as the Corona-Warn-App and
CovPass SDKs read it (full), and the reduced ``{"kid", "rawData"}`` shape of lists decoded from a
signed JWS (Sweden). ``kid`` is base64 of the first 8 bytes of the SHA-256 of the DER
(``rawData``, base64); every kid is checked against the certificate and a mismatch reported.
Lookups use the certificate's own kid, which the hcert specification defines.

Corrupt, and the list is refused whole: an entry that is not an object, has no ``rawData``,
``rawData`` or ``kid`` that is not base64, or a certificate no reader can decode. Kept and
reported: expired certificates (real lists are mostly expired DSCs, and a code's validity is
the adapter's question), kid or thumbprint mismatches, a ``country`` that differs from the
subject's. Entries of another ``certificateType`` (``CSCA``, ``UPLOAD``...) are not signers:
skipped and reported. The per-entry ``signature`` (the EU gateway trust anchor's CMS over the
entry) is not checked: check the list's own signature instead (``--signature``).
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone

from ...certs import load_certificate
from ..lists import CertificateEntry, TrustList

FORMAT = "dsc-list"
SCHEME = "eu-dcc"
#: examples named per kind of note; the rest are counted
EXAMPLES = 3


def detect(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("certificates"), list)


def read(data: dict, **_) -> TrustList:
    trust_list = TrustList(format=FORMAT)
    now = datetime.now(timezone.utc)
    problems: dict[str, list[str]] = {}
    seen = set()
    for n, entry in enumerate(data["certificates"]):
        where = f"certificates[{n}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not an object")
        raw = entry.get("rawData")
        if not isinstance(raw, str) or not raw:
            raise ValueError(f"{where}: no rawData")
        der = _b64(raw, f"{where}.rawData")
        try:
            cert = load_certificate(der)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        declared = _b64(entry["kid"], f"{where}.kid") if entry.get("kid") is not None else None
        role = entry.get("certificateType")
        if role is not None and role != "DSC":
            problems.setdefault(f"not a document signer ({role}), skipped", []).append(where)
            continue
        label = f"{where} ({base64.b64encode(cert.dcc_kid).decode()})"
        if cert.sha256 in seen:
            problems.setdefault("listed twice", []).append(label)
            continue
        seen.add(cert.sha256)
        if declared is not None and declared != cert.dcc_kid:
            problems.setdefault("kid does not match the certificate", []).append(
                f"{where} (kid {entry['kid']}, certificate "
                f"{base64.b64encode(cert.dcc_kid).decode()})")
        thumbprint = entry.get("thumbprint")
        if isinstance(thumbprint, str) and thumbprint.lower() != cert.sha256.hex():
            problems.setdefault("thumbprint does not match the certificate", []).append(label)
        country = entry.get("country") if isinstance(entry.get("country"), str) else None
        if country and cert.country and country.upper() != cert.country:
            problems.setdefault("country differs from the certificate subject's", []).append(
                f"{label}: {country} vs {cert.country}")
        if cert.not_after < now:
            problems.setdefault("expired (kept)", []).append(label)
        trust_list.certificates.append(CertificateEntry(
            certificate=cert, scheme=SCHEME, country=(country or cert.country or "").upper()
            or None, declared_kid=declared, role=role or "DSC"))
    for what, where in problems.items():
        shown = ", ".join(where[:EXAMPLES]) + (f" and {len(where) - EXAMPLES} more"
                                               if len(where) > EXAMPLES else "")
        trust_list.notes.append(f"{len(where)} {what}: {shown}")
    return trust_list


def _b64(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{where}: not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:  # some backends use the URL-safe alphabet
            return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_",
                                    validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where}: not base64") from None
