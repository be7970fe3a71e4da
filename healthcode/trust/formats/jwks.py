"""JWK sets: ``{"keys": [...]}``, with ``issuer`` (and optional ``scheme``) in the file or given.

This is what a partner region or an SHC issuer publishes (``<iss>/.well-known/jwks.json``).
A JWK set does not say whose it is, so the issuer is named by the file (``healthcode trust add``
writes it in) or by the operator (``--issuer``): never inferred from a URL.
"""
from __future__ import annotations

from ..jwk import CorruptKey, UnusableKey, parse_public_jwk, short_coordinates
from ..lists import IssuerEntry, TrustList
from ..store import TrustedKey

FORMAT = "jwks"


def detect(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("keys"), list) \
        and "issuerInfo" not in data


def read(data: dict, *, issuer: str | None = None, scheme: str | None = None,
         **_) -> TrustList:
    iss = data.get("issuer") or issuer
    if not iss:
        raise ValueError("a trusted JWK set file needs an 'issuer' member (or name the issuer)")
    trust_list = TrustList(format=FORMAT)
    entry = issuer_entry(iss, data["keys"], scheme=data.get("scheme") or scheme,
                         notes=trust_list.notes, where="keys")
    if not entry.keys:
        raise ValueError(f"no usable public key in the JWK set for {iss}")
    trust_list.issuers.append(entry)
    return trust_list


def issuer_entry(iss: str, members, *, scheme: str | None, notes: list, where: str,
                 **info) -> IssuerEntry:
    """The usable keys of one issuer; unusable ones noted, a corrupt one refuses the list."""
    if not isinstance(members, list):
        raise ValueError(f"{where}: 'keys' must be a list")
    keys = []
    for n, member in enumerate(members):
        try:
            public, key, algorithm = parse_public_jwk(member)
        except UnusableKey as exc:
            notes.append(f"{iss}: key {n} skipped: {exc}")
            continue
        except CorruptKey as exc:
            raise ValueError(f"{where}[{n}]: {exc}") from None
        if short_coordinates(public):
            notes.append(f"{iss}: key {public['kid']} has coordinates shorter than its curve "
                         f"(RFC 7518 6.2.1.2); read left-padded")
        keys.append(TrustedKey(issuer=iss, kid=public["kid"], jwk=public, key=key,
                               algorithm=algorithm, scheme=scheme))
    return IssuerEntry(iss=iss, keys=tuple(keys), scheme=scheme, **info)
