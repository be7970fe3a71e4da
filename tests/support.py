"""Shared test helpers: where the conformance data lives, a real Redis, QR decoding."""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from healthcode import embedded_redis

REPO = Path(__file__).resolve().parent.parent

UPSTREAM = {
    "eudcc": "github.com/eu-digital-green-certificates/dgc-testdata (Apache-2.0)",
    "eudcc-schema": "github.com/ehn-dcc-development/eu-dcc-schema and eu-dcc-valuesets",
    "shc": "spec.smarthealth.cards/examples (github.com/smart-on-fhir/health-cards, gh-pages)",
    "icao": "github.com/kurzdigital/vds-jvm src/test/resources and KDE khealthcertificate "
            "autotests/data/icao",
}


def conformance_dir(name: str) -> Path:
    """The folder of one conformance set, read in place from ``../shared/conformance``.

    ``HEALTHCODE_CONFORMANCE_DIR`` overrides the location. Where the data is absent the test
    skips naming the public upstream source, except under ``CI=true``, where that is a failure.
    """
    root = Path(os.environ.get("HEALTHCODE_CONFORMANCE_DIR",
                               REPO.parent / "shared" / "conformance"))
    folder = root / name
    if not folder.is_dir():
        message = (f"conformance data {folder} is missing; it comes from {UPSTREAM.get(name, name)}"
                   f" (set HEALTHCODE_CONFORMANCE_DIR to its parent folder)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    """A private redis-server on a free loopback port; can be stopped and restarted."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="healthcode-redis-")
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [embedded_redis.binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def decode_qr(png: bytes, upscale: int = 1) -> str:
    """Read the text back out of a rendered QR image, as a scanner would (``upscale``: enlarge
    a one-pixel-per-module image first, as the page's browser does)."""
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.load()
    if upscale > 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.NEAREST)
    results = zxingcpp.read_barcodes(image.convert("L"))
    assert results, "no QR code found in the image"
    return results[0].text


def decode_qr_result(png: bytes):
    """The zxing-cpp result object (text, version, error-correction level, ...)."""
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    results = zxingcpp.read_barcodes(image.convert("L"))
    assert results, "no QR code found in the image"
    return results[0]
