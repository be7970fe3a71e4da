"""The trust-list formats of the field, one module each, told apart by their content.

=================== ======================================================= ================
format              what                                                    module
=================== ======================================================= ================
``jwks``            a JWK set of one issuer (partner JWTs, SHC)             :mod:`.jwks`
``shc-crl``         an SHC card revocation list of one issuer key           :mod:`.shc_crl`
``certificate``     PEM/DER X.509 signer or CA certificate(s)               :mod:`.certificate`
``dsc-list``        EU DCC DSC list, backend/SDK JSON (full or reduced)     :mod:`.dsc_list`
``vci-snapshot``    the SMART Health Cards VCI directory snapshot           :mod:`.vci`
``issuers``         a plain list of issuers with their JWK sets             :mod:`.vci`
``icao-master-list`` an ICAO CSCA master list (CMS SignedData)              :mod:`.icao_master_list`
``csca-crl``        an X.509 CRL of an ICAO CSCA                            :mod:`.csca_crl`
``icao-pkd-ldif``   the ICAO PKD's LDIF download (master lists, CRLs)       :mod:`.icao_ldif`
=================== ======================================================= ================

Detection looks at the content, never trusts the file name alone: JSON by its members, binary
and PEM by their ASN.1 structure.
"""
from __future__ import annotations

import json

from ...errors import TrustListError, TrustSignatureError
from ..lists import TrustList
from . import (certificate, csca_crl, dsc_list, icao_ldif, icao_master_list, jwks, shc_crl,
               vci)

#: JSON formats in the order they are tried (the first whose ``detect`` says yes reads it)
JSON_FORMATS = (
    (vci.SNAPSHOT, vci.detect_snapshot, vci.read_snapshot),
    (dsc_list.FORMAT, dsc_list.detect, dsc_list.read),
    (jwks.FORMAT, jwks.detect, jwks.read),
    (shc_crl.FORMAT, shc_crl.detect, shc_crl.read),
    (vci.ISSUERS, vci.detect_issuers, vci.read_issuers),
)
#: formats a CRL-style list depends on: loaded after the certificates they refer to
LATE_FORMATS = frozenset({csca_crl.FORMAT})


def read(raw: bytes, *, name: str = "trust list", issuer: str | None = None,
         scheme: str | None = None, kid: str | None = None, anchors=(),
         trusted=()) -> TrustList:
    """Detect the format of ``raw`` and read the whole list, validated.

    :param issuer: the issuer of a JWK set or SHC revocation list that does not name one
    :param anchors: configured signer certificates (a master list or CRL must chain to one)
    :param trusted: CA certificates already trusted (may anchor a master list or a CRL)
    :raises TrustListError: unreadable, unknown format, or a corrupt entry (nothing is read)
    :raises TrustSignatureError: a master list's or CRL's signature does not check out
    """
    options = {"issuer": issuer, "scheme": scheme, "kid": kid, "anchors": tuple(anchors),
               "trusted": tuple(trusted)}
    try:
        stripped = raw.lstrip()
        if stripped[:1] in (b"{", b"["):
            return _read_json(raw, options)
        if icao_ldif.detect(raw):
            return icao_ldif.read(raw, **options)
        if icao_master_list.detect(raw):
            return icao_master_list.read(raw, **options)
        if csca_crl.detect(raw):
            return csca_crl.read(raw, **options)
        if stripped.startswith(b"-----BEGIN CERTIFICATE") or stripped[:1] == b"\x30":
            return certificate.read(raw, **options)
        raise ValueError("not a trust list this service reads (JWK set, certificate, SHC "
                         "revocation list, DSC list, VCI snapshot, issuers list, ICAO master "
                         "list, ICAO PKD LDIF, CSCA CRL)")
    except TrustSignatureError as exc:
        raise TrustSignatureError(f"{name}: {exc.message}") from exc
    except TrustListError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise TrustListError(f"{name}: {exc}") from exc


def _read_json(raw: bytes, options: dict) -> TrustList:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if isinstance(data, dict) and "participating_issuers" in data:
        raise ValueError("this is the VCI directory's issuer list, which holds no keys: import "
                         "the snapshot (logs/vci_snapshot.json) with its signature instead")
    for _, detect, reader in JSON_FORMATS:
        if detect(data):
            return reader(data, **options)
    raise ValueError("not a JWK set, revocation list, DSC list, VCI snapshot or issuers list")
