"""Subject ids: a keyed hash of the normalised identity document.

Redis keys, tokens, URLs and logs use the subject id, never the document number. The key
(``HEALTHCODE_SUBJECT_SECRET``) makes the id useless for guessing: without it nobody can
check whether a given document number is enrolled. 96 bits of HMAC-SHA-256 (16 base64url
characters): collisions are negligible for any population (p < 1e-10 for 1.4 billion people),
and the id is short because it sits inside every QR code.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from pathlib import Path

from .record import Document
from .secretfile import configured_or_file

SECRET_FILE = "subject.secret"
_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")
_MASK_NOISE = re.compile(r"[\s\-]")


def subject_id(secret: bytes, document: Document) -> str:
    digest = hmac.new(secret, document.normalised().encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode("ascii")


def is_subject_id(text: str) -> bool:
    return isinstance(text, str) and bool(_ID.match(text))


def mask_document_number(number: str) -> str:
    """Enough to tell two documents of one person apart, not enough to use: "H1****67"."""
    clean = _MASK_NOISE.sub("", number)
    if len(clean) <= 4:
        return "*" * len(clean)
    return clean[:2] + "*" * (len(clean) - 4) + clean[-2:]


def load_secret(configured: str | None, data_dir: str | os.PathLike,
                create: bool = True) -> bytes:
    """The configured secret, else the data dir's, generated on first use (mode 0600) when
    ``create`` allows (see :func:`healthcode.secretfile.configured_or_file`)."""
    return configured_or_file(configured, Path(data_dir) / SECRET_FILE,
                              "HEALTHCODE_SUBJECT_SECRET", create=create).encode("utf-8")
