"""Which issuers and keys each scheme accepts.

Trust is configured, never discovered: keys come from files an operator put in the trust
directory (or from ``add_*`` calls), and are never fetched from a URL named inside a scanned
code. JWS-based schemes (SHC, partner JWTs, our own) are trusted as JWK sets per issuer; X.509
schemes (EU DCC, ICAO VDS-NC) as certificates, indexed by the identifiers their codes carry.

Trust directory layout, one file per issuer or certificate:

- ``*.jwks.json`` — ``{"issuer": "...", "scheme": "...", "keys": [...]}`` (``scheme`` optional)
- ``*.crl.json`` — ``{"issuer": "...", "kid": "...", "crl": {...SHC revocation list...}}``
- ``*.pem`` / ``*.der`` / ``*.crt`` / ``*.cer`` — signer or CA certificates
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

import jwt
from jwt.exceptions import PyJWKError

from ..certs import Certificate, load_certificate
from ..errors import ConfigurationError
from .jwk import jwk_thumbprint


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

    def __init__(self):
        self._keys: dict[tuple[str, str], TrustedKey] = {}
        self._certificates: dict[bytes, Certificate] = {}
        self._certificate_schemes: dict[bytes, str | None] = {}
        self._by_dcc_kid: dict[bytes, list[bytes]] = {}
        self._kid_issuers: dict[str, set[str]] = {}
        self._revocations: dict[tuple[str, str], RevocationList] = {}
        self._issuer_schemes: dict[str, str | None] = {}

    # -- adding -----------------------------------------------------------------------------

    def add_jwks(self, jwks: dict, issuer: str, *, scheme: str | None = None) -> list[str]:
        """Trust every usable public key of a JWK set for ``issuer``; return their kids.

        Keys without a ``kid`` get their RFC 7638 thumbprint. Private members are dropped.
        Raises ``ValueError`` when the set holds no usable key.
        """
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ValueError("a JWK set is an object with a 'keys' list")
        if not issuer:
            raise ValueError("a JWK set is trusted for a named issuer")
        kids = []
        for member in jwks["keys"]:
            if not isinstance(member, dict):
                continue
            public = {k: v for k, v in member.items() if k not in ("d", "p", "q", "dp", "dq",
                                                                    "qi", "oth", "k")}
            try:
                parsed = jwt.PyJWK(public)
            except (PyJWKError, jwt.InvalidKeyError, KeyError, ValueError, TypeError):
                continue
            kid = public.get("kid") or jwk_thumbprint(public)
            public["kid"] = kid
            self._kid_issuers.setdefault(kid, set()).add(issuer)
            self._keys[(issuer, kid)] = TrustedKey(issuer=issuer, kid=kid, jwk=public,
                                                   key=parsed.key,
                                                   algorithm=public.get("alg") or
                                                   parsed.algorithm_name, scheme=scheme)
            kids.append(kid)
        if not kids:
            raise ValueError(f"no usable public key in the JWK set for {issuer}")
        self._issuer_schemes[issuer] = scheme
        return kids

    def add_x509(self, data: bytes, *, scheme: str | None = None) -> Certificate:
        """Trust a signer or CA certificate (DER or PEM)."""
        cert = load_certificate(data)
        if cert.sha256 not in self._certificates:
            self._by_dcc_kid.setdefault(cert.dcc_kid, []).append(cert.sha256)
        self._certificates[cert.sha256] = cert
        self._certificate_schemes[cert.sha256] = scheme
        return cert

    def add_revocation_list(self, crl: dict, issuer: str, kid: str) -> RevocationList:
        """Add an SHC card revocation list (``{"kid", "method": "rid", "ctr", "rids"}``)."""
        if not isinstance(crl, dict) or crl.get("method", "rid") != "rid":
            raise ValueError("only rid-method revocation lists are supported")
        rids: dict[str, int | None] = {}
        for entry in crl.get("rids", []):
            if not isinstance(entry, str) or not entry:
                raise ValueError("revocation list rids must be strings")
            rid, _, stamp = entry.partition(".")
            rids[rid] = int(stamp) if stamp else None
        revocations = RevocationList(issuer=issuer, kid=kid, ctr=int(crl.get("ctr", 1)),
                                     rids=rids)
        self._revocations[(issuer, kid)] = revocations
        return revocations

    # -- querying ---------------------------------------------------------------------------

    def key(self, issuer: str, kid: str) -> TrustedKey | None:
        return self._keys.get((issuer, kid))

    def keys_by_kid(self, kid: str, scheme: str | None = None) -> list[TrustedKey]:
        """Every trusted key filed under ``kid``, from any issuer (SHC finds keys this way)."""
        return [k for k in (self._keys.get((issuer, kid)) for issuer in
                            self._kid_issuers.get(kid, ()))
                if k is not None and (scheme is None or k.scheme in (None, scheme))]

    def keys(self, *, issuer: str | None = None, scheme: str | None = None) -> list[TrustedKey]:
        return [k for k in self._keys.values()
                if (issuer is None or k.issuer == issuer)
                and (scheme is None or k.scheme in (None, scheme))]

    def issuers(self, scheme: str | None = None) -> list[str]:
        return sorted(i for i, s in self._issuer_schemes.items() if scheme is None or
                      s in (None, scheme))

    def is_trusted_issuer(self, issuer: str, scheme: str | None = None) -> bool:
        return issuer in self.issuers(scheme)

    def certificates(self, scheme: str | None = None) -> list[Certificate]:
        return [c for h, c in self._certificates.items()
                if scheme is None or self._certificate_schemes[h] in (None, scheme)]

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

    def revocation_list(self, issuer: str, kid: str) -> RevocationList | None:
        return self._revocations.get((issuer, kid))

    def is_revoked(self, issuer: str, kid: str, rid: str | None,
                   issued_at: datetime | None) -> bool:
        if not rid:
            return False
        crl = self._revocations.get((issuer, kid))
        return crl is not None and crl.revokes(rid, issued_at)

    def to_dict(self) -> dict:
        """Public export for offline scanners: JWK sets per issuer and certificates."""
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
        """Load one trust file or every trust file in a folder (recursively).

        A JWK set or revocation list must name its ``issuer``, in the file or as
        ``default_issuer`` (``healthcode verify --issuer``): trust is never inferred from where
        a file sits or from a URL. Raises ``ConfigurationError`` naming the unreadable file.
        """
        path = Path(path)
        files: Iterable[Path] = sorted(p for p in path.rglob("*") if p.is_file()) \
            if path.is_dir() else [path]
        for file in files:
            self._load_file(file, default_issuer)

    def _load_file(self, file: Path, default_issuer: str | None = None) -> None:
        name = file.name.lower()
        try:
            if name.endswith((".pem", ".der", ".crt", ".cer")):
                self.add_x509(file.read_bytes())
            elif name.endswith(".json"):
                data = json.loads(file.read_text(encoding="utf-8"))
                issuer = data.get("issuer") or default_issuer
                if "crl" in data or "rids" in data:
                    crl = data.get("crl", data)
                    if not issuer:
                        raise ValueError("a revocation list file needs an 'issuer' member "
                                         "(or name the issuer)")
                    self.add_revocation_list(crl, issuer=issuer,
                                             kid=data.get("kid") or crl["kid"])
                elif "keys" in data:
                    if not issuer:
                        raise ValueError("a trusted JWK set file needs an 'issuer' member "
                                         "(or name the issuer)")
                    self.add_jwks(data, issuer=issuer, scheme=data.get("scheme"))
                else:
                    raise ValueError("not a JWK set or revocation list")
            elif name.startswith(".") or name.endswith((".md", ".txt")):
                return
            else:
                raise ValueError("unknown trust file type")
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise ConfigurationError(f"trust file {file}: {exc}") from exc
