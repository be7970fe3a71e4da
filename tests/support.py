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


def decode_qr(png: bytes) -> str:
    """Read the text back out of a rendered QR image, as a scanner would."""
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.load()
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


class ServeProcess:
    """``healthcode serve`` as the README starts it: a real process on a free loopback port,
    with its own data dir and (REDIS_URL unset) its own private redis-server.

    Output goes to a file, not a pipe: a pipe nobody reads fills up and stalls the server.
    """

    def __init__(self, data_dir: Path, workers: int | None = None, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.workers = workers
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
        self.env.update(HEALTHCODE_DATA_DIR=str(self.data_dir),
                        PYTHONPATH=os.pathsep.join(
                            [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self.env.update(env or {})
        self.log_path = self.data_dir.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        """Run a ``healthcode`` command against the same data dir; its output."""
        import sys

        done = subprocess.run([sys.executable, "-m", "healthcode.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"healthcode {' '.join(args)}: {done.stderr}")
        return done.stdout

    def token(self, role: str, *extra: str) -> str:
        return self.cli("tokens", "create", "--role", role, *extra).strip().splitlines()[-1]

    def start(self, ready_seconds: float = 30, tries: int = 3) -> "ServeProcess":
        """Start and wait until *this* server answers /readyz. On a shared machine a free port
        can be taken between choosing and binding it (and then another server answers it):
        gunicorn says so in its log, and the start is tried again on another port."""
        for _ in range(tries):
            if self._start_once(ready_seconds):
                return self
            self.stop()
            self.port = free_port()
        raise RuntimeError(f"healthcode serve did not start:\n{self.log()}")

    def _start_once(self, ready_seconds: float) -> bool:
        import sys
        import urllib.request

        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "healthcode.cli", "serve", "--bind",
                   f"127.0.0.1:{self.port}"]
        if self.workers:
            command += ["--workers", str(self.workers)]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + ready_seconds
        while time.monotonic() < deadline:
            log = self.log()
            if self.proc.poll() is not None or "Address already in use" in log:
                return False
            if self._listening():
                try:
                    with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                        if response.status == 200:
                            return True
                except OSError:
                    pass
            time.sleep(0.2)
        return False

    def _listening(self) -> bool:
        """Whether the listening socket on our port is this master's (Linux /proc)."""
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.split(":")[1], 16) == self.port:
                inodes.add(fields[9])
        fds = Path(f"/proc/{self.proc.pid}/fd")
        try:
            return any(link.readlink().name in {f"socket:[{i}]" for i in inodes}
                       for link in fds.iterdir())
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """The master's children that are gunicorn workers (the private Redis is not one)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def redis_pid(self) -> int | None:
        return embedded_redis.pid(self.data_dir)

    def stop(self, timeout: float = 40) -> int | None:
        import signal

        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
        # a private Redis left behind by a failed run is stopped too
        embedded_redis.stop(self.data_dir)
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        # already started (e.g. by a helper that returns a started server): do not start twice
        if self.proc is not None and self.proc.poll() is None:
            return self
        return self.start()

    def __exit__(self, *exc):
        self.stop()
