"""First-run set-up of the data dir, shared by the app factory and the CLI.

Under a file lock, so that several gunicorn workers starting together agree: the subject
secret and a first signing key are created once, and the private Redis is started once when
``REDIS_URL`` is unset.
"""
from __future__ import annotations

from pathlib import Path

from . import embedded_redis, sessions, subject
from .errors import ConfigurationError
from .keys import KeyRing
from .recordcrypt import KEY_FILE, load_cipher, ring_file
from .subject import load_secret

SUBFOLDERS = ("trust", "mappings")


def prepare(config, generate: bool | None = None) -> dict:
    """Make the data dir usable; returns what was created, for the CLI to report.

    Secrets are generated only where no other host can need the same ones: when ``REDIS_URL``
    is unset (a private Redis, so one host) or when ``generate`` says so (``healthcode init``).
    With ``REDIS_URL`` set, a missing secret stops start-up instead (``GENERATE_SECRETS``
    records the decision for :mod:`healthcode.sessions`). Nothing is written, and no lock file
    taken, when the data dir already holds everything: it may be shared read-only.
    """
    data_dir = Path(config["DATA_DIR"])
    if generate is None:
        generate = config.get("GENERATE_SECRETS")
    if generate is None:
        generate = not config.get("REDIS_URL")
    config["GENERATE_SECRETS"] = bool(generate)
    created = {}
    secret = None
    if not generate:  # refuse before touching the directory
        secret = load_secret(config.get("SUBJECT_SECRET"), data_dir, create=False)
    try:
        ring = KeyRing(data_dir / "keys")
        complete = secret is not None and ring.has_active() and all(
            (data_dir / sub).is_dir() for sub in SUBFOLDERS)
        if not complete:
            with embedded_redis.file_lock(data_dir / ".bootstrap.lock"):
                secret = load_secret(config.get("SUBJECT_SECRET"), data_dir, create=generate)
                if generate:
                    sessions.load_secret(config.get("SECRET_KEY"), data_dir, create=True)
                ring.reload()
                if not ring.has_active():
                    created["key"] = ring.generate().kid
                for sub in SUBFOLDERS:
                    (data_dir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a read-only shared directory that was never initialised
        raise ConfigurationError(
            f"{data_dir} lacks a signing key or its folders and cannot be written here "
            f"({exc.strerror}): run `healthcode init` where the directory is written") from exc
    cipher = record_cipher(config, data_dir, generate)
    if not config.get("REDIS_URL"):
        config["REDIS_URL"] = embedded_redis.ensure_running(data_dir)
        created["redis"] = config["REDIS_URL"]
    return {"secret": secret, "ring": ring, "cipher": cipher, "created": created}


def record_cipher(config, data_dir: Path, generate: bool):
    """The record key ring: like the subject secret, made up only where no other host can
    need the same one (see :func:`prepare`)."""
    if config.get("RECORD_KEY") or ring_file(data_dir).exists() or not generate:
        return load_cipher(config.get("RECORD_KEY"), data_dir, create=generate)
    with embedded_redis.file_lock(data_dir / ".bootstrap.lock"):
        return load_cipher(None, data_dir)


def initialise(config) -> dict:
    """``healthcode init``: the secrets and a first signing key in the data dir, for a
    directory every host will share; what exists already is kept. Starts no Redis."""
    data_dir = Path(config["DATA_DIR"])
    files = {name: (data_dir / name).exists()
             for name in (subject.SECRET_FILE, sessions.SECRET_FILE, KEY_FILE)}
    prepared = prepare({**config, "REDIS_URL": config.get("REDIS_URL") or "redis://unused"},
                       generate=True)
    prepared["created"].update({name: True for name, existed in files.items() if not existed
                                and (data_dir / name).exists()})
    return prepared


def init_app(app) -> None:
    prepared = prepare(app.config)
    app.extensions["healthcode.subject_secret"] = prepared["secret"]
    app.extensions["healthcode.keys"] = prepared["ring"]
    app.extensions["healthcode.record_cipher"] = prepared["cipher"]
