"""Trust: which issuers, keys and certificates each scheme accepts (DESIGN.md, **contract**).

``healthcode.trust.TrustStore`` is the public name adapters and partners rely on. The room holds
the in-memory store (:mod:`.store`), one module per import format (:mod:`.formats`), the trust
folder of the data dir (:mod:`.folder`) and the signed bundle for offline scanners
(:mod:`.bundle`).
"""
from .jwk import b64url, jwk_thumbprint
from .store import RevocationList, TrustedKey, TrustStore

__all__ = ["TrustStore", "TrustedKey", "RevocationList", "b64url", "jwk_thumbprint"]
