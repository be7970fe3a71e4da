"""What a trust file holds once read: the model every import format produces.

A format module reads and validates a whole file into a :class:`TrustList` before anything is
added to a store, so an import is all or nothing: a corrupt entry raises
:class:`~healthcode.errors.TrustListError` and nothing is trusted. Entries that are well formed
but cannot serve (an expired certificate, a key of a type we do not verify, an issuer that
published no key) are kept where they are harmless and listed in :attr:`TrustList.notes`, so an
operator sees them in ``healthcode trust list`` instead of losing them silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..certs import Certificate


@dataclass(frozen=True)
class IssuerEntry:
    """A JWS issuer and the keys it publishes (SHC, partner JWTs)."""

    iss: str
    #: ``TrustedKey`` objects, already parsed and checked
    keys: tuple
    scheme: str | None = None
    name: str | None = None
    #: the VCI directory's ``canonical_iss``: the issuer this one is an alias of
    canonical_iss: str | None = None
    website: str | None = None
    #: when the directory last fetched this issuer's keys (VCI ``lastRetrieved``)
    last_retrieved: datetime | None = None


@dataclass(frozen=True)
class CertificateEntry:
    """A signer or CA certificate with what its list says about it."""

    certificate: Certificate
    scheme: str | None = None
    #: the country the list files it under (DSC lists' ``country``), else the subject's ``C=``
    country: str | None = None
    #: the kid the list gives (DSC lists: base64 of the first 8 bytes of the DER's SHA-256)
    declared_kid: bytes | None = None
    #: ``DSC``, ``CSCA``... as the list says
    role: str | None = None


@dataclass(frozen=True)
class ShcRevocations:
    """An SHC card revocation list of one issuer key."""

    issuer: str
    kid: str
    crl: dict


@dataclass(frozen=True)
class CertificateRevocations:
    """An X.509 CRL of a CSCA: the serial numbers of certificates it revoked."""

    issuer: str
    serials: frozenset
    this_update: datetime | None
    next_update: datetime | None
    der: bytes


@dataclass
class TrustList:
    """The validated content of one trust file."""

    format: str
    issuers: list[IssuerEntry] = field(default_factory=list)
    certificates: list[CertificateEntry] = field(default_factory=list)
    revocations: list[ShcRevocations] = field(default_factory=list)
    crls: list[CertificateRevocations] = field(default_factory=list)
    #: when the publisher's data was current (VCI ``time``); ``None``: the import time counts
    retrieved_at: datetime | None = None
    #: who vouched for the list: its detached signature's signer or a master list's signer
    signed_by: str | None = None
    #: unusable but well-formed entries, reported to the operator
    notes: list[str] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return (len(self.issuers) + len(self.certificates) + len(self.revocations)
                + len(self.crls))


@dataclass
class Source:
    """One loaded trust file: where trust came from and how old it is."""

    name: str
    format: str
    entries: int
    retrieved_at: datetime | None = None
    imported_at: datetime | None = None
    signed_by: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def as_of(self) -> datetime | None:
        """The data's own date where the list carries one, else when it was imported."""
        return self.retrieved_at or self.imported_at

    def age_days(self, now: datetime | None = None) -> float | None:
        if self.as_of is None:
            return None
        now = now or datetime.now(timezone.utc)
        return (now - self.as_of).total_seconds() / 86400

    def to_dict(self, now: datetime | None = None) -> dict:
        age = self.age_days(now)
        return {"name": self.name, "format": self.format, "entries": self.entries,
                "as_of": _iso(self.as_of), "retrieved_at": _iso(self.retrieved_at),
                "imported_at": _iso(self.imported_at),
                "age_days": round(age, 1) if age is not None else None,
                "signed_by": self.signed_by, "notes": list(self.notes)}


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def parse_iso(value, what: str) -> datetime | None:
    """An ISO 8601 time from a list (``Z`` or an offset); ``None`` when absent."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
