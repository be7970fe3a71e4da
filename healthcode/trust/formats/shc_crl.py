"""SHC card revocation lists: ``{"kid", "method": "rid", "ctr", "rids": [...]}``.

Published by an issuer at ``<iss>/.well-known/crl/<kid>.json``; a file names the issuer and kid
(``{"issuer", "kid", "crl": {...}}``, as ``healthcode trust add`` writes it) or the operator
names them.
"""
from __future__ import annotations

from ..lists import ShcRevocations, TrustList
from ..store import parse_revocation_list

FORMAT = "shc-crl"


def detect(data) -> bool:
    return isinstance(data, dict) and ("crl" in data or "rids" in data)


def read(data: dict, *, issuer: str | None = None, kid: str | None = None, **_) -> TrustList:
    crl = data.get("crl", data)
    iss = data.get("issuer") or issuer
    if not iss:
        raise ValueError("a revocation list file needs an 'issuer' member (or name the issuer)")
    kid = data.get("kid") or kid or (crl.get("kid") if isinstance(crl, dict) else None)
    if not kid:
        raise ValueError("a revocation list names the key it applies to ('kid')")
    parse_revocation_list(crl, iss, kid)  # validate now, add later
    return TrustList(format=FORMAT, revocations=[ShcRevocations(issuer=iss, kid=kid, crl=crl)])
