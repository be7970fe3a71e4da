"""The key ring: our ES256 signing keys, kept as files in ``<data dir>/keys``.

One key is active and signs; older keys keep verifying the codes they signed until an operator
retires them. ``kid`` is derived from the public key (a truncated RFC 7638 thumbprint), so it
cannot drift from the key it names. Private keys are written with mode 0600 and never leave
the directory: the public API exports public JWKs only.

Files: ``<kid>.pem`` (PKCS#8 private key) and ``ring.json`` (``{"active": kid,
"retired": [kid, ...]}``). Several gunicorn workers share the directory; each reloads the ring
when ``ring.json`` changes, so a rotation takes effect without a restart.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import ConfigurationError
from .trust import jwk_thumbprint

#: characters of the thumbprint kept as kid: 48 bits, ample to tell a ring's handful of keys
#: apart (``generate`` refuses a collision), and short because the kid is in every QR code.
KID_LENGTH = 8
RING_FILE = "ring.json"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    public_key: ec.EllipticCurvePublicKey
    created: float
    retired: bool = False

    def public_jwk(self) -> dict:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.public_key))
        return {"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"],
                "kid": self.kid, "alg": "ES256", "use": "sig"}


def kid_for(public_key) -> str:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    return jwk_thumbprint(jwk)[:KID_LENGTH]


class KeyRing:
    """ES256 keys on disk; one active, the rest verify-only until retired."""

    def __init__(self, directory: str | os.PathLike, reload_interval: float = 2.0):
        self.directory = Path(directory)
        self.reload_interval = reload_interval
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._active: str | None = None
        self._stamp: tuple | None = None
        self._checked = 0.0
        self.reload()

    # -- reading ------------------------------------------------------------------------------

    def _ring_stamp(self) -> tuple | None:
        try:
            st = (self.directory / RING_FILE).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self) -> None:
        """Read the ring from disk (a no-op if ``ring.json`` has not changed)."""
        with self._lock:
            stamp = self._ring_stamp()
            self._checked = time.monotonic()
            if stamp == self._stamp and self._keys:
                return
            state = self._read_state()
            keys = {}
            if self.directory.is_dir():
                for pem in sorted(self.directory.glob("*.pem")):
                    key = _load_private(pem)
                    kid = kid_for(key.public_key())
                    if kid != pem.stem:
                        raise ConfigurationError(f"key file {pem.name} holds the key {kid}")
                    keys[kid] = SigningKey(kid=kid, private_key=key,
                                           public_key=key.public_key(),
                                           created=pem.stat().st_mtime,
                                           retired=kid in state.get("retired", []))
            active = state.get("active")
            if active is not None and active not in keys:
                raise ConfigurationError(f"active key {active} has no key file in "
                                         f"{self.directory}")
            self._keys, self._active, self._stamp = keys, active, stamp

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._checked >= self.reload_interval:
            if self._ring_stamp() != self._stamp:
                self.reload()
            else:
                self._checked = time.monotonic()

    def _read_state(self) -> dict:
        path = self.directory / RING_FILE
        if not path.exists():
            return {}
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{path} is unreadable: {exc}") from exc
        if not isinstance(state, dict):
            raise ConfigurationError(f"{path} must hold a JSON object")
        return state

    @property
    def active(self) -> SigningKey:
        self._maybe_reload()
        if self._active is None:
            raise ConfigurationError("no active signing key: run `healthcode keys generate`")
        return self._keys[self._active]

    def has_active(self) -> bool:
        self._maybe_reload()
        return self._active is not None

    def verification_key(self, kid: str) -> SigningKey | None:
        """A key that may still verify: known and not retired."""
        self._maybe_reload()
        key = self._keys.get(kid)
        if key is None or key.retired:
            return None
        return key

    def keys(self) -> list[SigningKey]:
        self._maybe_reload()
        return sorted(self._keys.values(), key=lambda k: k.created)

    def jwks(self) -> dict:
        """Public keys that verify (active and not yet retired), as a JWK set."""
        return {"keys": [k.public_jwk() for k in self.keys() if not k.retired]}

    # -- changing (CLI) -----------------------------------------------------------------------

    def generate(self, activate: bool | None = None) -> SigningKey:
        """Create a key; it becomes active if asked, or if there is no active key yet."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        kid = kid_for(key.public_key())
        if kid in self._keys:
            raise ConfigurationError(f"key id {kid} collides with an existing key; try again")
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path = self.directory / f"{kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        state = self._read_state()
        if activate or (activate is None and not state.get("active")):
            state["active"] = kid
        self._write_state(state)
        self.reload()
        return self._keys[kid]

    def rotate(self) -> SigningKey:
        """A new active key; the old one keeps verifying until retired."""
        return self.generate(activate=True)

    def retire(self, kid: str) -> None:
        state = self._read_state()
        if kid not in self._keys:
            raise ConfigurationError(f"no key {kid}")
        if state.get("active") == kid:
            raise ConfigurationError(f"{kid} is the active key: rotate first")
        retired = set(state.get("retired", []))
        retired.add(kid)
        state["retired"] = sorted(retired)
        self._write_state(state)
        self.reload()

    def _write_state(self, state: dict) -> None:
        path = self.directory / RING_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def _load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"key file {path.name} is unreadable") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigurationError(f"key file {path.name} is not a P-256 key")
    return key
