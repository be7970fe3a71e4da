"""Which issuers and keys each scheme accepts: the in-memory trust store.

Trust is configured, never discovered: keys come from files an operator put in the trust
directory (or from ``add_*`` calls), and are never fetched from a URL named inside a scanned
code. JWS-based schemes (SHC, partner JWTs, our own) are trusted as JWK sets per issuer; X.509
schemes (EU DCC, ICAO VDS-NC) as certificates, indexed by the identifiers their codes carry.

Lookups stay by key id (a dict access), however many lists are loaded: the EU DCC kid (the
first 8 bytes of the DER's SHA-256), the JWS ``kid``, the issuer. What the files in a trust
folder may hold is in :mod:`healthcode.trust.formats`; every entry remembers the source it came
from, so the store can say how old each source is (:meth:`TrustStore.stale_sources`).
"""
from __future__ import annotations

import base64
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..certs import Certificate, load_certificate
from .jwk import parse_public_jwk
from .lists import CertificateEntry, IssuerEntry, Source, TrustList


@dataclass(frozen=True)
class TrustedKey:
    """A public key of a JWS issuer."""

    issuer: str
    kid: str
    jwk: dict
    key: object
    algorithm: str | None
    scheme: str | None = None


@dataclass
class RevocationList:
    """An SHC-style card revocation list: ``rid`` or ``rid.timestamp`` entries."""

    issuer: str
    kid: str
    ctr: int
    rids: dict[str, int | None] = field(default_factory=dict)

    def revokes(self, rid: str, issued_at: datetime | None) -> bool:
        if rid not in self.rids:
            return False
        cutoff = self.rids[rid]
        if cutoff is None or issued_at is None:
            return True
        return issued_at.timestamp() < cutoff


class TrustStore:
    """Trusted keys and certificates, queried by scheme, issuer and key id."""

    def __init__(self, *, max_age: timedelta | None = None):
        self._keys: dict[tuple[str, str], TrustedKey] = {}
        self._certificates: dict[bytes, Certificate] = {}
        self._certificate_schemes: dict[bytes, str | None] = {}
        self._certificate_info: dict[bytes, CertificateEntry] = {}
        self._certificate_sources: dict[bytes, str | None] = {}
        self._by_dcc_kid: dict[bytes, list[bytes]] = {}
        self._kid_issuers: dict[str, set[str]] = {}
        self._revocations: dict[tuple[str, str], RevocationList] = {}
        self._issuer_schemes: dict[str, str | None] = {}
        self._issuer_info: dict[str, IssuerEntry] = {}
        self._issuer_sources: dict[str, str | None] = {}
        self._revoked_serials: dict[str, set[int]] = {}
        #: every loaded trust file by name (:class:`~healthcode.trust.lists.Source`)
        self.sources: dict[str, Source] = {}
        #: a source whose data is older than this is reported (``HEALTHCODE_TRUST_MAX_AGE_DAYS``)
        self.max_age = max_age
        #: bumped on every change, so that what is built from the store (the signed bundle)
        #: knows when to build again
        self.generation = 0
        self._export: tuple[int, dict] | None = None

    # -- adding -----------------------------------------------------------------------------

    def add_jwks(self, jwks: dict, issuer: str, *, scheme: str | None = None,
                 source: str | None = None) -> list[str]:
        """Trust every usable public key of a JWK set for ``issuer``; return their kids.

        Keys without a ``kid`` get their RFC 7638 thumbprint. Private members are dropped.
        Raises ``ValueError`` when the set holds no usable key.
        """
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ValueError("a JWK set is an object with a 'keys' list")
        if not issuer:
            raise ValueError("a JWK set is trusted for a named issuer")
        keys = []
        for member in jwks["keys"]:
            try:
                public, key, algorithm = parse_public_jwk(member)
            except ValueError:
                continue  # pyjwt's PyJWKSet habit: skip what we cannot use
            keys.append(TrustedKey(issuer=issuer, kid=public["kid"], jwk=public, key=key,
                                   algorithm=algorithm, scheme=scheme))
        if not keys:
            raise ValueError(f"no usable public key in the JWK set for {issuer}")
        self._add_issuer(IssuerEntry(iss=issuer, keys=tuple(keys), scheme=scheme), source)
        return [k.kid for k in keys]

    def _add_issuer(self, entry: IssuerEntry, source: str | None) -> None:
        for key in entry.keys:
            self._kid_issuers.setdefault(key.kid, set()).add(entry.iss)
            self._keys[(entry.iss, key.kid)] = key
        self._issuer_schemes[entry.iss] = entry.scheme
        known = self._issuer_info.get(entry.iss)
        if known is None or entry.name or entry.canonical_iss or entry.last_retrieved:
            self._issuer_info[entry.iss] = entry
        self._issuer_sources[entry.iss] = source
        self.generation += 1

    def add_x509(self, data: bytes, *, scheme: str | None = None,
                 source: str | None = None) -> Certificate:
        """Trust a signer or CA certificate (DER or PEM)."""
        cert = load_certificate(data)
        self._add_certificate(CertificateEntry(certificate=cert, scheme=scheme), source)
        return cert

    def _add_certificate(self, entry: CertificateEntry, source: str | None) -> None:
        cert = entry.certificate
        if cert.sha256 not in self._certificates:
            self._by_dcc_kid.setdefault(cert.dcc_kid, []).append(cert.sha256)
        # A list's kid that is not the DER's own is reported when the list is read; lookups
        # use the certificate's own (the hcert specification derives the kid from the DSC,
        # and the EU DCC adapter indexes signers the same way).
        self._certificates[cert.sha256] = cert
        self._certificate_schemes[cert.sha256] = entry.scheme
        self._certificate_info[cert.sha256] = entry
        self._certificate_sources[cert.sha256] = source
        self.generation += 1

    def add_revocation_list(self, crl: dict, issuer: str, kid: str) -> RevocationList:
        """Add an SHC card revocation list (``{"kid", "method": "rid", "ctr", "rids"}``)."""
        revocations = parse_revocation_list(crl, issuer, kid)
        self._revocations[(issuer, kid)] = revocations
        self.generation += 1
        return revocations

    def add_list(self, trust_list: TrustList, *, source: str,
                 imported_at: datetime | None = None) -> Source:
        """Add everything a validated trust file holds, remembering where it came from.

        The list was validated whole when it was read, so nothing here can fail half-way.
        """
        for issuer in trust_list.issuers:
            self._add_issuer(issuer, source)
        for entry in trust_list.certificates:
            self._add_certificate(entry, source)
        for shc in trust_list.revocations:
            self.add_revocation_list(shc.crl, issuer=shc.issuer, kid=shc.kid)
        for crl in trust_list.crls:
            self._revoked_serials.setdefault(crl.issuer, set()).update(crl.serials)
        record = Source(name=source, format=trust_list.format, entries=trust_list.entries,
                        retrieved_at=trust_list.retrieved_at, imported_at=imported_at,
                        signed_by=trust_list.signed_by, notes=list(trust_list.notes))
        self.sources[source] = record
        self.generation += 1
        return record

    # -- querying ---------------------------------------------------------------------------

    def key(self, issuer: str, kid: str) -> TrustedKey | None:
        return self._keys.get((issuer, kid))

    def keys_by_kid(self, kid: str, scheme: str | None = None) -> list[TrustedKey]:
        """Every trusted key filed under ``kid``, from any issuer (SHC finds keys this way)."""
        found = []
        keys = self._keys
        for issuer in self._kid_issuers.get(kid, ()):  # one or two issuers: a plain loop
            key = keys.get((issuer, kid))
            if key is not None and (scheme is None or key.scheme is None
                                    or key.scheme == scheme):
                found.append(key)
        return found

    def keys(self, *, issuer: str | None = None, scheme: str | None = None) -> list[TrustedKey]:
        return [k for k in self._keys.values()
                if (issuer is None or k.issuer == issuer)
                and (scheme is None or k.scheme in (None, scheme))]

    def issuers(self, scheme: str | None = None) -> list[str]:
        return sorted(i for i, s in self._issuer_schemes.items() if scheme is None or
                      s in (None, scheme))

    def is_trusted_issuer(self, issuer: str, scheme: str | None = None) -> bool:
        # a dict lookup, not a scan: a VCI directory holds hundreds of issuers
        if issuer not in self._issuer_schemes:
            return False
        return scheme is None or self._issuer_schemes[issuer] in (None, scheme)

    def issuer_scheme(self, issuer: str) -> str | None:
        """The scheme an issuer's keys are trusted for (``None``: any)."""
        return self._issuer_schemes.get(issuer)

    def revocation_lists(self) -> list[RevocationList]:
        """Every SHC revocation list, by issuer and kid."""
        return [self._revocations[k] for k in sorted(self._revocations)]

    def issuer_info(self, issuer: str) -> IssuerEntry | None:
        """What the list said about an issuer: name, ``canonical_iss``, website, last fetch."""
        return self._issuer_info.get(issuer)

    def certificates(self, scheme: str | None = None) -> list[Certificate]:
        return [c for h, c in self._certificates.items()
                if scheme is None or self._certificate_schemes[h] in (None, scheme)]

    def certificate_info(self, cert: Certificate) -> CertificateEntry | None:
        """What the list said about a certificate: country, declared kid, role."""
        return self._certificate_info.get(cert.sha256)

    def certificates_by_dcc_kid(self, kid: bytes) -> list[Certificate]:
        """EU DCC signers whose kid (first 8 bytes of the DER's SHA-256) is ``kid``."""
        return [self._certificates[h] for h in self._by_dcc_kid.get(bytes(kid), ())
                if self._for_scheme(h, "eu-dcc")]

    def _for_scheme(self, digest: bytes, scheme: str | None) -> bool:
        tag = self._certificate_schemes.get(digest)
        return scheme is None or tag is None or tag == scheme

    def certificate(self, der: bytes, scheme: str | None = None) -> Certificate | None:
        """The trusted certificate with exactly these bytes (if trusted for ``scheme``)."""
        digest = hashlib.sha256(der).digest()
        cert = self._certificates.get(digest)
        return cert if cert is not None and self._for_scheme(digest, scheme) else None

    def certificates_by_subject(self, subject: str,
                                scheme: str | None = None) -> list[Certificate]:
        return [c for h, c in self._certificates.items()
                if c.subject == subject and self._for_scheme(h, scheme)]

    def is_certificate_revoked(self, cert: Certificate) -> bool:
        """Whether a CRL of the certificate's issuer (a CSCA CRL) lists its serial number."""
        serials = self._revoked_serials.get(cert.issuer)
        return bool(serials) and cert.serial_number in serials

    def revocation_list(self, issuer: str, kid: str) -> RevocationList | None:
        return self._revocations.get((issuer, kid))

    def is_revoked(self, issuer: str, kid: str, rid: str | None,
                   issued_at: datetime | None) -> bool:
        if not rid:
            return False
        crl = self._revocations.get((issuer, kid))
        return crl is not None and crl.revokes(rid, issued_at)

    # -- freshness and tallies --------------------------------------------------------------

    def stale_sources(self, now: datetime | None = None) -> list[Source]:
        """Sources whose data is older than :attr:`max_age` (none when no limit is set).

        Stale trust is reported, never dropped: an expired signed trust list once stopped
        every verifier in a country, so old keys keep verifying while operators are told.
        """
        if self.max_age is None:
            return []
        now = now or datetime.now(timezone.utc)
        limit = self.max_age.total_seconds() / 86400
        return [s for s in self.sources.values()
                if s.age_days(now) is not None and s.age_days(now) > limit]

    def warnings(self, now: datetime | None = None) -> list[dict]:
        """The ``warnings`` entries a verify answer carries about trust (stale sources)."""
        stale = self.stale_sources(now)
        if not stale:
            return []
        days = self.max_age.total_seconds() / 86400
        names = ", ".join(f"{s.name} ({s.age_days(now):.0f} days)" for s in stale)
        return [{"code": "stale_trust_source",
                 "message": f"trust data older than {days:g} days: {names}; import fresh "
                            f"lists (healthcode trust import)"}]

    def summary(self, now: datetime | None = None) -> dict:
        """Counts per scheme, country and issuer, expired entries, and each source's age."""
        now = now or datetime.now(timezone.utc)
        schemes: dict[str, Counter] = {}
        countries: dict[str, dict[str, Counter]] = {}
        for digest, cert in self._certificates.items():
            scheme = self._certificate_schemes[digest] or "any"
            info = self._certificate_info[digest]
            expired = cert.not_after < now
            tally = schemes.setdefault(scheme, Counter())
            tally["certificates"] += 1
            tally["expired_certificates"] += expired
            country = info.country or cert.country or "??"
            per = countries.setdefault(scheme, {}).setdefault(country, Counter())
            per["certificates"] += 1
            per["expired"] += expired
        issuers = {}
        key_counts = Counter(iss for iss, _ in self._keys)
        for iss, scheme in self._issuer_schemes.items():
            info = self._issuer_info.get(iss)
            count = key_counts[iss]
            tally = schemes.setdefault(scheme or "any", Counter())
            tally["issuers"] += 1
            tally["keys"] += count
            issuers[iss] = {"scheme": scheme, "keys": count,
                            "name": info.name if info else None,
                            "canonical_iss": info.canonical_iss if info else None,
                            "last_retrieved": info.last_retrieved.strftime("%Y-%m-%dT%H:%M:%SZ")
                            if info and info.last_retrieved else None,
                            "source": self._issuer_sources.get(iss)}
        for (iss, _), crl in self._revocations.items():
            schemes.setdefault(self._issuer_schemes.get(iss) or "any",
                               Counter())["revocation_lists"] += 1
        return {
            "sources": [s.to_dict(now) for s in self.sources.values()],
            "stale": [s.name for s in self.stale_sources(now)],
            "schemes": {k: dict(v) for k, v in sorted(schemes.items())},
            "countries": {k: {c: dict(t) for c, t in sorted(v.items())}
                          for k, v in sorted(countries.items())},
            "issuers": dict(sorted(issuers.items())),
        }

    def to_dict(self) -> dict:
        """Public export for offline scanners: JWK sets per issuer and certificates.

        Built once per change of the store (``GET /api/v1/trust`` is public, and with real
        lists loaded this is a megabyte of JSON); callers get a shallow copy.
        """
        cached = self._export
        if cached is None or cached[0] != self.generation:
            cached = self._export = (self.generation, self._build_export())
        return dict(cached[1])

    def _build_export(self) -> dict:
        issuers: dict[str, dict] = {}
        for k in self._keys.values():
            entry = issuers.setdefault(k.issuer, {"issuer": k.issuer, "scheme": k.scheme,
                                                  "keys": []})
            entry["keys"].append(k.jwk)
        return {
            "jwks": sorted(issuers.values(), key=lambda e: e["issuer"]),
            "certificates": [
                {"subject": c.subject, "issuer": c.issuer,
                 "scheme": self._certificate_schemes[h],
                 "not_before": c.not_before.isoformat(), "not_after": c.not_after.isoformat(),
                 "der": base64.b64encode(c.der).decode()}
                for h, c in sorted(self._certificates.items())],
            "revocations": [
                {"issuer": r.issuer, "kid": r.kid, "ctr": r.ctr, "count": len(r.rids)}
                for r in self._revocations.values()],
        }

    # -- loading ----------------------------------------------------------------------------

    def load_path(self, path: str | os.PathLike, default_issuer: str | None = None) -> None:
        """Load one trust file or every trust file in a folder (recursively), any format of
        :mod:`healthcode.trust.formats`, auto-detected.

        A JWK set or revocation list must name its ``issuer``, in the file or as
        ``default_issuer`` (``healthcode verify --issuer``): trust is never inferred from where
        a file sits or from a URL. Raises ``ConfigurationError`` naming the unreadable file.
        """
        from .folder import load_into  # the folder reads formats that build on this store

        load_into(self, path, default_issuer=default_issuer)


def parse_revocation_list(crl: dict, issuer: str, kid: str) -> RevocationList:
    """Read an SHC card revocation list (``rid`` method); ``ValueError`` when it is not one."""
    if not isinstance(crl, dict) or crl.get("method", "rid") != "rid":
        raise ValueError("only rid-method revocation lists are supported")
    if not isinstance(crl.get("rids", []), list):
        raise ValueError("revocation list rids must be a list")
    rids: dict[str, int | None] = {}
    for entry in crl.get("rids", []):
        if not isinstance(entry, str) or not entry:
            raise ValueError("revocation list rids must be strings")
        rid, _, stamp = entry.partition(".")
        rids[rid] = int(stamp) if stamp else None
    return RevocationList(issuer=issuer, kid=kid, ctr=int(crl.get("ctr", 1)), rids=rids)
