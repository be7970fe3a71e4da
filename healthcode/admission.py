"""What a worker lets in: a cap on requests in flight (load shedding) and a deadline on bodies.

Load shedding. Past saturation, a queue only adds waiting: every request gets slower and the
ones that time out client-side were worked on for nothing. Each worker counts the requests it
is working on; at ``MAX_IN_FLIGHT`` a new one is answered at once with 503 ``overloaded`` and
``Retry-After: SHED_RETRY_AFTER``, before Flask parses anything, so a shed request costs a few
microseconds and the admitted ones keep their latency. Under gevent workers a request yields
the loop only while it waits (on Redis), so the count is the worker's queue: N in flight means
a new request waits behind N others' CPU work, and the cap bounds that wait. (Under sync
workers one request is in flight at a time and the cap never bites: the backlog is the
kernel's.) ``/healthz`` and ``/metrics`` are never shed: operators must see a busy service.

Body deadline. gunicorn's gevent worker bounds reading a request's head (``keepalive``) but not
its body, which the application reads: a client sending a body at a byte a second would keep a
greenlet and a Flask request open for as long as it liked. Reads of ``wsgi.input`` here share
one deadline, ``BODY_TIMEOUT`` from the first read, enforced on gunicorn's socket; past it the
answer is 408 ``request_timeout``.
"""
from __future__ import annotations

import json
import socket
import threading
import time

from . import logs, metrics
from .errors import Overloaded, RequestTimeout

NEVER_SHED = frozenset({"/healthz", "/metrics"})


class DeadlineInput:
    """``wsgi.input`` whose reads together may take at most ``seconds``."""

    def __init__(self, stream, sock, seconds: float):
        self._stream = stream
        self._sock = sock
        self._seconds = seconds
        self._deadline = None

    def _call(self, method, *args):
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._seconds
        remaining = self._deadline - now
        if remaining <= 0:
            raise RequestTimeout(f"the body did not arrive within {self._seconds:g} s")
        previous = self._sock.gettimeout()
        self._sock.settimeout(remaining)
        try:
            return getattr(self._stream, method)(*args)
        except (socket.timeout, TimeoutError):
            raise RequestTimeout(f"the body did not arrive within {self._seconds:g} s") from None
        finally:
            self._sock.settimeout(previous)

    def read(self, *args):
        return self._call("read", *args)

    def readline(self, *args):
        return self._call("readline", *args)

    def readlines(self, *args):
        return self._call("readlines", *args)

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class Admission:
    """WSGI middleware: the in-flight cap, then the body deadline, then the app."""

    def __init__(self, app, *, max_in_flight: int, retry_after: int, body_timeout: float):
        self.app = app
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.body_timeout = body_timeout
        self.in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            admitted = self.in_flight < self.max_in_flight or \
                environ.get("PATH_INFO") in NEVER_SHED
            if admitted:
                self.in_flight += 1
        if not admitted:
            metrics.count_shed()
            return self.shed(environ, start_response)
        metrics.in_flight.inc()
        try:
            sock = environ.get("gunicorn.socket")
            if sock is not None and _has_body(environ):
                environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], sock,
                                                      self.body_timeout)
            return self.app(environ, start_response)
        finally:
            metrics.in_flight.dec()
            with self._lock:
                self.in_flight -= 1

    def shed(self, environ, start_response):
        error = Overloaded("the service is at capacity; retry after the time in Retry-After")
        body = json.dumps(error.to_dict()).encode()
        start_response("503 Service Unavailable", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Retry-After", str(self.retry_after)),
            (logs.HEADER, logs.request_id(environ)),
            ("X-Content-Type-Options", "nosniff")])
        return [body]


def _has_body(environ) -> bool:
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or \
        "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def init_app(app) -> None:
    config = app.config
    app.wsgi_app = Admission(app.wsgi_app, max_in_flight=config["MAX_IN_FLIGHT"],
                             retry_after=config["SHED_RETRY_AFTER"],
                             body_timeout=config["BODY_TIMEOUT"])
