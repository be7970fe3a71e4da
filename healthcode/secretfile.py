"""Secrets kept in files in the data dir, created on first use.

Several gunicorn workers may start at once and all find the file missing. The secret is written
to a private temporary file and then hard-linked into place, which either succeeds whole or
fails because another worker got there first; nobody ever reads a half-written secret.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import ConfigurationError

MIN_LENGTH = 16


def configured_or_file(configured: str | None, path: Path, setting: str,
                       create: bool = True) -> str:
    """The configured value (checked), else the file's secret, created if missing.

    :param create: whether this process may make the secret up. A host on a shared Redis
        (``REDIS_URL`` set) may not: every host must hold the same secret, so one of its own
        would split the deployment (subject ids, CSRF tokens that differ from host to host).
    """
    if configured:
        if len(configured) < MIN_LENGTH:
            raise ConfigurationError(f"{setting} must be at least {MIN_LENGTH} characters")
        return configured
    if not create and not Path(path).exists():
        raise ConfigurationError(
            f"{setting} is unset and {path} does not exist. REDIS_URL is set, so this host may "
            f"be one of several sharing that Redis, and a secret it made up would differ from "
            f"theirs: set {setting}, or run `healthcode init` once on the shared data directory")
    return read_or_create(Path(path))


def read_or_create(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker created it first: use theirs
        finally:
            os.unlink(temporary)
    secret = path.read_text().strip()
    if len(secret) < MIN_LENGTH:
        raise ConfigurationError(f"{path} holds no usable secret")
    return secret
