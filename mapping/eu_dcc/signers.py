"""Trusted DSCs by kid, prepared for verifying, for one trust store."""
from __future__ import annotations

import time
from typing import NamedTuple

from healthcode.certs import Certificate

from .claims import Claims
from .cose import CoseSign1, _Key, _prepare


class _SignerIndex:
    """kid -> prepared keys of one trust store, so a scan does not hash every trusted DER.

    ``TrustStore.certificates_by_dcc_kid`` hashes each certificate per call (O(n) SHA-256s,
    ~40 µs for 50 certificates, a third of a whole verification). The index is only a hint:
    an entry is re-checked against the store every ``recheck`` seconds (the adapter passes
    :data:`mapping.eu_dcc.RECHECK_SECONDS`), and a miss or a
    failed signature falls back to the store's own list, so added or replaced certificates
    are always seen.
    """

    def __init__(self):
        self.by_kid: dict[bytes, tuple[_Key, ...]] = {}
        self._checked: dict[bytes, float] = {}
        self._known: dict[int, tuple[bytes, _Key]] = {}

    def hint(self, trust, kid: bytes, scheme: str, recheck: float) -> tuple[_Key, ...]:
        """The keys known for ``kid``, re-checked against ``trust`` when ``recheck`` seconds
        have passed since the last check."""
        keys = self.by_kid.get(kid, ())
        if keys:
            now = time.monotonic()
            if now - self._checked.get(kid, -recheck) >= recheck:
                if not all(trust.certificate(k.certificate.der, scheme=scheme) is k.certificate
                           for k in keys):
                    return ()
                self._checked[kid] = now
        return keys

    def refresh(self, certificates) -> None:
        by_kid: dict[bytes, list[_Key]] = {}
        known = {}
        for cert in certificates:
            entry = self._known.get(id(cert))
            if entry is None or entry[1].certificate is not cert:
                entry = (cert.dcc_kid, _prepare(cert))
            known[id(cert)] = entry
            by_kid.setdefault(entry[0], []).append(entry[1])
        self.by_kid = {kid: tuple(keys) for kid, keys in by_kid.items()}
        self._checked = {}  # every entry was just read from the store, but recheck anyway
        self._known = known


class Verified(NamedTuple):
    """A COSE message whose signature verified, with its claims and its signer."""

    cose: CoseSign1
    claims: Claims
    certificate: Certificate
    certificate_type: str
    #: the signer key's curve name (EC DSCs), known from the prepared key
    curve: str | None = None
