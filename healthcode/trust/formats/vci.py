"""The SMART Health Cards VCI directory snapshot, and plain issuer lists with JWK sets.

The snapshot (``logs/vci_snapshot.json`` of github.com/the-commons-project/vci-directory,
rebuilt nightly): ``{"directory", "time", "issuerInfo": [{"issuer": {"iss", "name",
"canonical_iss"?, "website"?}, "keys": [JWK...], "crls"?: [SHC revocation list...],
"lastRetrieved"}]}``. Its signature is detached (``vci_snapshot.sig``, see
:mod:`healthcode.trust.signature`). The source's age is the snapshot's ``time``; each issuer's
``lastRetrieved`` is kept and shown, because the directory keeps issuers that went offline.

A plain issuer list: ``{"issuers": [{"iss", "name"?, "canonical_iss"?, "scheme"?, "keys":
[...] | "jwks": {"keys": [...]}}]}`` or the bare list, for an operator's own selection.

Corrupt (refused whole): an issuer without an https ``iss``, keys that are not a list, a JWK
that is not what it claims (see :mod:`healthcode.trust.jwk`), a revocation list that is not one,
a time that is not ISO 8601. Kept and reported: an issuer with no usable key (listed, never
trusted), keys of a type we do not verify.
"""
from __future__ import annotations

from datetime import timedelta

from ..lists import ShcRevocations, TrustList, parse_iso
from ..store import parse_revocation_list
from .jwks import issuer_entry

SNAPSHOT = "vci-snapshot"
ISSUERS = "issuers"
SCHEME = "shc"
#: an issuer the directory could not fetch for this long is probably offline
OFFLINE_AFTER = timedelta(days=7)


def detect_snapshot(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("issuerInfo"), list)


def detect_issuers(data) -> bool:
    return isinstance(data, list) or (isinstance(data, dict)
                                      and isinstance(data.get("issuers"), list))


def read_snapshot(data: dict, **_) -> TrustList:
    trust_list = TrustList(format=SNAPSHOT, retrieved_at=parse_iso(data.get("time"), "time"))
    for n, info in enumerate(data["issuerInfo"]):
        where = f"issuerInfo[{n}]"
        if not isinstance(info, dict) or not isinstance(info.get("issuer"), dict):
            raise ValueError(f"{where}: no 'issuer' object")
        issuer = info["issuer"]
        _add(trust_list, where, issuer, info.get("keys"), SCHEME,
             last_retrieved=parse_iso(info.get("lastRetrieved"), f"{where}.lastRetrieved"),
             crls=info.get("crls"))
    if trust_list.retrieved_at is None:
        # no snapshot time: the freshest issuer retrieval stands for the list
        times = [e.last_retrieved for e in trust_list.issuers if e.last_retrieved]
        trust_list.retrieved_at = max(times) if times else None
    if trust_list.retrieved_at is not None:
        behind = [e for e in trust_list.issuers if e.last_retrieved and
                  trust_list.retrieved_at - e.last_retrieved > OFFLINE_AFTER]
        if behind:
            trust_list.notes.append(
                f"{len(behind)} issuers were last retrieved more than {OFFLINE_AFTER.days} days "
                f"before the snapshot (offline issuers the directory keeps for archival; kept, "
                f"see `trust list` for each one's last retrieval)")
    return trust_list


def read_issuers(data, *, scheme: str | None = None, **_) -> TrustList:
    trust_list = TrustList(format=ISSUERS)
    for n, issuer in enumerate(data if isinstance(data, list) else data["issuers"]):
        where = f"issuers[{n}]"
        if not isinstance(issuer, dict):
            raise ValueError(f"{where}: not an object")
        keys = issuer.get("keys")
        if keys is None and isinstance(issuer.get("jwks"), dict):
            keys = issuer["jwks"].get("keys")
        _add(trust_list, where, issuer, keys, issuer.get("scheme") or scheme or SCHEME,
             crls=issuer.get("crls"))
    return trust_list


def _add(trust_list: TrustList, where: str, issuer: dict, keys, scheme: str, *,
         last_retrieved=None, crls=None) -> None:
    iss = issuer.get("iss") or issuer.get("issuer")
    if not isinstance(iss, str) or not iss.startswith("https://"):
        raise ValueError(f"{where}: the issuer's 'iss' must be an https URL")
    canonical = issuer.get("canonical_iss")
    if canonical is not None and not (isinstance(canonical, str)
                                      and canonical.startswith("https://")):
        raise ValueError(f"{where}: canonical_iss must be an https URL")
    entry = issuer_entry(iss, keys if keys is not None else [], scheme=scheme,
                         notes=trust_list.notes, where=f"{where}.keys",
                         name=issuer.get("name") if isinstance(issuer.get("name"), str)
                         else None,
                         canonical_iss=canonical, website=issuer.get("website")
                         if isinstance(issuer.get("website"), str) else None,
                         last_retrieved=last_retrieved)
    if not entry.keys:
        trust_list.notes.append(f"{iss}: no usable key published (listed, not trusted)")
        return
    trust_list.issuers.append(entry)
    if crls is None:
        return
    if not isinstance(crls, list):
        raise ValueError(f"{where}.crls: not a list")
    for m, crl in enumerate(crls):
        kid = crl.get("kid") if isinstance(crl, dict) else None
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"{where}.crls[{m}]: no kid")
        try:
            parse_revocation_list(crl, iss, kid)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}.crls[{m}]: {exc}") from None
        trust_list.revocations.append(ShcRevocations(issuer=iss, kid=kid, crl=crl))
