"""Who signs a converted code in each target scheme.

Our own scheme and partner JWT schemes are signed with the key ring's active key (partners
trust our JWKS). Schemes with their own PKI need their own signer, configured in
``<data dir>/signers/<scheme>.toml``:

.. code-block:: toml

    key = "dcc-signer.key.pem"        # PKCS#8 private key, relative to this file
    certificate = "dcc-signer.crt"    # DER or PEM certificate (EU DCC document signer)
    issuer = "MO"                     # issuer in that scheme (country code, or SHC https URL)
    country = "MO"                    # optional
    kid = "..."                       # optional; adapters derive it where the scheme says how

A scheme with no signer cannot be a conversion target (``unsupported_scheme``).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mapping import Signer

from .certs import load_certificate
from .errors import CodeError, ConfigurationError
from .keys import KeyRing

RING_SCHEMES_KIND = "ring"


def load_signers(directory: Path) -> dict[str, Signer]:
    signers = {}
    if not directory.is_dir():
        return signers
    for path in sorted(directory.glob("*.toml")):
        signers[path.stem] = _load(path)
    return signers


def _load(path: Path) -> Signer:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    unknown = set(data) - {"key", "certificate", "issuer", "country", "kid", "algorithm"}
    if unknown:
        raise ConfigurationError(f"{path}: {sorted(unknown)[0]}: unknown key")
    for required in ("key", "issuer"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise ConfigurationError(f"{path}: {required}: required")
    try:
        key = serialization.load_pem_private_key((path.parent / data["key"]).read_bytes(),
                                                 password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{path}: key: unreadable private key") from exc
    certificate = None
    if data.get("certificate"):
        try:
            certificate = load_certificate((path.parent / data["certificate"]).read_bytes()).der
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{path}: certificate: {exc}") from exc
    return Signer(private_key=key, kid=data.get("kid", ""), issuer=data["issuer"],
                  algorithm=data.get("algorithm", "ES256"), certificate=certificate,
                  country=data.get("country"))


def signer_for(scheme: str, adapter, signers: dict[str, Signer], ring: KeyRing,
               issuer: str) -> Signer:
    """The configured signer for ``scheme``, else our ring key for JWT-family schemes."""
    if scheme in signers:
        return signers[scheme]
    if scheme == "native" or getattr(adapter, "signs_with_ring", False):
        key = ring.active
        return Signer(private_key=key.private_key, kid=key.kid, issuer=issuer)
    raise CodeError("unsupported_scheme", f"no signer is configured for {scheme}: add "
                                          f"signers/{scheme}.toml to the data dir")
