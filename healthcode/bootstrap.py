"""First-run set-up of the data dir, shared by the app factory and the CLI.

Under a file lock, so that several gunicorn workers starting together agree: the subject
secret and a first signing key are created once, and the private Redis is started once when
``REDIS_URL`` is unset.
"""
from __future__ import annotations

from pathlib import Path

from . import embedded_redis
from .keys import KeyRing
from .recordcrypt import load_cipher
from .subject import load_secret


def prepare(config) -> dict:
    """Make the data dir usable; returns what was created, for the CLI to report."""
    data_dir = Path(config["DATA_DIR"])
    created = {}
    with embedded_redis.file_lock(data_dir / ".bootstrap.lock"):
        secret = load_secret(config.get("SUBJECT_SECRET"), data_dir)
        cipher = load_cipher(config.get("RECORD_KEY"), data_dir)
        ring = KeyRing(data_dir / "keys")
        if not ring.has_active():
            created["key"] = ring.generate().kid
        for sub in ("trust", "mappings"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True)
    if not config.get("REDIS_URL"):
        config["REDIS_URL"] = embedded_redis.ensure_running(data_dir)
        created["redis"] = config["REDIS_URL"]
    return {"secret": secret, "ring": ring, "cipher": cipher, "created": created}


def init_app(app) -> None:
    prepared = prepare(app.config)
    app.extensions["healthcode.subject_secret"] = prepared["secret"]
    app.extensions["healthcode.keys"] = prepared["ring"]
    app.extensions["healthcode.record_cipher"] = prepared["cipher"]
