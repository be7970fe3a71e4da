"""Personal data at rest: every stored record is sealed with AES-GCM before it reaches Redis.

A copied dump or append-only file of the store then discloses no names or birth dates. The
subject id is the associated data, so a sealed record moved onto another subject's key fails to
open instead of showing one person's data as another's. The verify path reads only the status
key, which holds no personal data, so it pays nothing for this.

Keys form a small ring with one-byte ids: new records are sealed under the newest key, older
records open under the key they name until ``healthcode records rekey`` re-seals them; only then
may an old key be removed. The ring comes from ``HEALTHCODE_RECORD_KEY`` (``<id>:<base64url
key>`` entries separated by commas, or one bare key, id 1) or else from ``<data dir>/record.keys``
(one ``<id> <base64url key>`` line per key, mode 0600), created with one key on first use.

Sealed form: key id (1 byte) | nonce (12 bytes) | ciphertext and GCM tag (16 bytes).
"""
from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigurationError, HealthCodeError
from .secretfile import create_exclusive

KEY_FILE = "record.keys"
NONCE = 12


class RecordUnreadable(HealthCodeError):
    """A stored record cannot be opened: its key is not in the ring, or it was tampered with."""

    reason = "record_unreadable"
    status = 500


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_ring(text: str, source: str) -> dict[int, bytes]:
    """Key id -> 256-bit key from ``id:key`` / ``id key`` entries (or one bare key, id 1)."""
    ring = {}
    entries = [e for e in text.replace(",", "\n").splitlines() if e.strip()]
    for entry in entries:
        entry = entry.strip()
        if entry.startswith("#"):
            continue
        kid_text, sep, key_text = entry.replace(" ", ":", 1).partition(":")
        if not sep and len(entries) == 1:
            kid_text, key_text = "1", entry
        try:
            kid, key = int(kid_text), _unb64(key_text.strip())
        except ValueError:
            raise ConfigurationError(f"{source}: not an '<id>:<base64url key>' entry") from None
        if not 1 <= kid <= 255 or len(key) != 32:
            raise ConfigurationError(f"{source}: key ids are 1..255 and keys 32 bytes")
        ring[kid] = key
    if not ring:
        raise ConfigurationError(f"{source} holds no record key")
    return ring


class RecordCipher:
    """Seals and opens stored records under a key ring (see the module docstring)."""

    def __init__(self, ring: dict[int, bytes]):
        if not ring:
            raise ConfigurationError("the record key ring is empty")
        self._ring = dict(ring)
        self.kids = sorted(ring)
        self.newest = self.kids[-1]
        self._aead = {kid: AESGCM(key) for kid, key in ring.items()}
        self._seal = self._aead[self.newest].encrypt
        self._prefix = bytes([self.newest])

    def __reduce__(self):
        # so a bulk import's parsing processes get the same ring
        return RecordCipher, (self._ring,)

    def seal(self, sid: str, plain: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return self._prefix + nonce + self._seal(nonce, plain, sid.encode())

    def open(self, sid: str, sealed: bytes) -> bytes:
        aead = self._aead.get(sealed[0]) if sealed else None
        if aead is None:
            raise RecordUnreadable("a stored record names a record key that is not in the ring")
        try:
            return aead.decrypt(sealed[1:1 + NONCE], sealed[1 + NONCE:], sid.encode())
        except InvalidTag:
            raise RecordUnreadable("a stored record does not open under its key") from None

    @staticmethod
    def key_id(sealed: bytes) -> int:
        return sealed[0]


def ring_file(data_dir) -> Path:
    return Path(data_dir) / KEY_FILE


def load_cipher(configured: str | None, data_dir, create: bool = True) -> RecordCipher:
    """The configured ring, else the data dir's, created with one key on first use where
    ``create`` allows (not on a host that may share its Redis with others: their records
    would be sealed under a key this host does not have)."""
    if configured:
        return RecordCipher(parse_ring(configured, "HEALTHCODE_RECORD_KEY"))
    path = ring_file(data_dir)
    if not path.exists():
        if not create:
            raise ConfigurationError(
                f"HEALTHCODE_RECORD_KEY is unset and {path} does not exist. REDIS_URL is set, "
                f"so this host may be one of several sharing that Redis: set "
                f"HEALTHCODE_RECORD_KEY, or run `healthcode init` once on the shared data "
                f"directory")
        create_exclusive(path, f"1 {_b64(AESGCM.generate_key(256))}\n")
    return RecordCipher(parse_ring(path.read_text(), str(path)))


def add_key(data_dir) -> int:
    """Append a new newest key to the data dir's ring; returns its id."""
    path = ring_file(data_dir)
    ring = parse_ring(path.read_text(), str(path)) if path.exists() else {}
    kid = max(ring, default=0) + 1
    if kid > 255:
        raise ConfigurationError("key ids are exhausted: re-key, remove old keys, renumber")
    lines = [f"{k} {_b64(v)}" for k, v in sorted(ring.items())]
    lines.append(f"{kid} {_b64(AESGCM.generate_key(256))}")
    text = "\n".join(lines) + "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(temporary, path)
    return kid
