"""Gunicorn server hooks for :mod:`healthcode.gunicorn_conf`: run in the master process.

- ``on_starting``: answer without a ``Server`` header. Gunicorn writes ``Server: gunicorn`` in
  its own HTTP/1 response writer and has no setting to drop it (upstream issue #825 settled on
  "set it in your application", but an application's header is sent beside gunicorn's, not
  instead of it). The writer is looked up by name in :mod:`gunicorn.http.wsgi` for every
  response, so replacing it there with a subclass that leaves the line out is the one small,
  version-checked override; workers fork after it and inherit it.
- ``child_exit``: tell prometheus_client a worker is gone, so its live gauges stop counting.

Nothing here imports prometheus_client at module level: the master must not load it before
``PROMETHEUS_MULTIPROC_DIR`` is set (see :mod:`healthcode.metrics`).
"""
from __future__ import annotations

import multiprocessing
from pathlib import Path


def default_workers() -> int:
    return multiprocessing.cpu_count() + 1


class _QuietResponse:
    """Mixin: gunicorn's response without its ``Server:`` line."""

    def default_headers(self):
        return [line for line in super().default_headers()
                if not line.lower().startswith("server:")]


def hide_server_header() -> None:
    from gunicorn.http import wsgi

    if not issubclass(wsgi.Response, _QuietResponse):
        wsgi.Response = type("Response", (_QuietResponse, wsgi.Response), {})


def quiet_late_patch_warning() -> None:
    """gevent warns that ssl was imported before its worker patched it (gunicorn's master
    imports ssl itself, and redis and jwt with it). The modules it names as holding their own
    reference (redis.asyncio, jwt.jwks_client) are ones this service never calls; redis-py's
    sync client reads ``ssl.SSLContext`` through the patched module. The warning would print on
    every worker boot, so it is filtered, by its exact text only."""
    import warnings

    warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl has already been "
                                              "imported")


def on_starting(server) -> None:
    hide_server_header()
    quiet_late_patch_warning()


def metrics_directory(path) -> Path:
    """A fresh prometheus_client multiprocess directory: counts of an earlier run removed."""
    directory = Path(path)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


def child_exit(server, worker) -> None:
    from . import config

    directory = config.load_env()["METRICS_DIR"]
    if directory:
        # not through healthcode.metrics: importing it would give the master metrics of its own
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, directory)
