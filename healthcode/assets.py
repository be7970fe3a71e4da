"""Static files under content-hashed names, cached for a year, and compressed responses.

A page names its scripts and styles as ``/assets/<digest>/<path>``, the digest being the first
hex digits of the file's SHA-256. A new release changes the digest and so the URL, which is
what lets every browser keep a file for a year (``immutable``) without ever running yesterday's
script against today's page. The plain ``/static/<path>`` URLs keep working, uncached.

Pages, scripts and styles are compressed with Flask-Compress: a page at a border on a weak phone
signal loads a third of the bytes. API answers (JSON) are not: they are small, a verify must
not spend CPU on them, and API clients that decompress nothing keep working.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, abort, current_app, redirect, send_from_directory, url_for
from flask_compress import Compress

bp = Blueprint("assets", __name__)

YEAR = 365 * 86400
DIGEST_LENGTH = 12


@lru_cache(maxsize=256)
def _digest(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:DIGEST_LENGTH]


def digest(filename: str) -> str | None:
    """The content digest of a static file, or None when there is no such file."""
    folder = Path(current_app.static_folder).resolve()
    path = (folder / filename).resolve()
    if folder not in path.parents or not path.is_file():
        return None
    return _digest(path, path.stat().st_mtime_ns)


def asset_url(filename: str) -> str:
    """The cacheable URL of a static file (templates call this instead of ``url_for``)."""
    found = digest(filename)
    if found is None:
        raise FileNotFoundError(f"no static file {filename!r}")
    return url_for("assets.asset", digest=found, filename=filename)


@bp.get("/assets/<digest>/<path:filename>")
def asset(digest: str, filename: str):
    current = globals()["digest"](filename)
    if current is None:
        abort(404)
    if digest != current:
        # an old page asking for an old release's file: send it to today's, uncached
        response = redirect(url_for("assets.asset", digest=current, filename=filename), 302)
        response.headers["Cache-Control"] = "no-store"
        return response
    response = send_from_directory(current_app.static_folder, filename, max_age=YEAR)
    response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
    return response


def init_app(app) -> None:
    app.config.setdefault("COMPRESS_ALGORITHM", ["br", "gzip"])
    # Static files are streamed from disk: compress them too. Event streams are not on the
    # list of compressed types, so a held-open status stream is never buffered.
    app.config.setdefault("COMPRESS_STREAMS", True)
    app.config.setdefault("COMPRESS_MIN_SIZE", 512)
    # application/wasm: the scanner's decoder (zxing-cpp) is a 0.9 MB file that packs to under half
    app.config.setdefault("COMPRESS_MIMETYPES", ["text/html", "text/css", "text/javascript",
                                                 "application/javascript", "application/wasm"])
    Compress(app)
    app.register_blueprint(bp)
    app.jinja_env.globals["asset_url"] = asset_url
