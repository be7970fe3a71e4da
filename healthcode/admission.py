"""What a worker lets in: a request only once its body is in, and at most ``MAX_IN_FLIGHT``
of them at once (load shedding).

Body first, with a deadline. gunicorn's gevent worker bounds reading a request's head
(``keepalive``) but not its body, which the application reads: a client sending a body at a
byte a second would hold a Flask request open for as long as it liked, and count against the
in-flight cap while doing nothing. So the body (at most ``MAX_BODY`` bytes; a larger one is
passed on unread for the app's 413) is read here, into memory, within ``BODY_TIMEOUT`` from its
first byte, enforced on gunicorn's socket; past it the answer is 408 ``request_timeout``.
Waiting for a slow body costs a greenlet, not a slot.

Load shedding. Past saturation, a queue only adds waiting: every request gets slower and the
ones that time out client-side were worked on for nothing. A new request is answered at once
with 503 ``overloaded`` and ``Retry-After: SHED_RETRY_AFTER``, before Flask parses anything (a
shed request costs microseconds, so the admitted ones keep their latency), when either bound
is passed:

- ``MAX_QUEUE_MS``, the worker's queueing delay. Under gevent, work waiting for the CPU waits
  in the loop's run queue, out of sight of any counter: requests already parsed, replies from
  Redis, new connections. A timer greenlet sleeps 10 ms over and over and measures how late it
  wakes: that lateness (smoothed over ~50 ms) is the wait a request arriving now has ahead of
  it, whatever the mix of cheap verifies and costly renders, and whatever else the machine
  runs. This is the bound that keeps latency flat (the "toobusy" technique).
- ``MAX_IN_FLIGHT``, the requests the worker works on at once: a hard cap on the memory and
  Redis connections a burst can take, whatever the loop says.

Under sync workers one request is in flight at a time and there is no loop to measure: neither
bound bites, the backlog is the kernel's. ``/healthz`` and ``/metrics`` are never shed:
operators must see a busy service.
"""
from __future__ import annotations

import io
import json
import os
import socket
import threading
import time

from . import logs, metrics
from .errors import Overloaded, RequestTimeout

NEVER_SHED = frozenset({"/healthz", "/metrics"})
#: the loop-lag bound sheds only while this many requests are in flight: a loop that runs late
#: with fewer is slowed by the machine (other processes), not by a queue of ours, and refusing
#: work would then waste the little CPU the worker gets
QUEUE_OF_OUR_OWN = 4


class _Refused(Exception):
    def __init__(self, error):
        self.error = error


def read_body(environ, limit: int, seconds: float) -> bytes:
    """The request body, at most ``limit + 1`` bytes, within ``seconds`` of starting."""
    stream = environ["wsgi.input"]
    sock = environ.get("gunicorn.socket")
    declared = _declared(environ)
    wanted = min(declared, limit + 1) if declared else limit + 1
    deadline = time.monotonic() + seconds
    chunks, got = [], 0
    previous = sock.gettimeout() if sock is not None else None
    try:
        while got < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout
            if sock is not None:
                sock.settimeout(remaining)
            chunk = stream.read(min(65536, wanted - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except (socket.timeout, TimeoutError):
        raise _Refused(RequestTimeout(f"the body did not arrive within {seconds:g} s")) \
            from None
    finally:
        if sock is not None:
            sock.settimeout(previous)
    return b"".join(chunks)


class LoopLag:
    """How late this worker's gevent loop runs a 10 ms timer, smoothed: seconds."""

    INTERVAL = 0.01
    WEIGHT = 0.2  # of the newest sample: a memory of about five samples, ~50 ms

    def __init__(self):
        self.seconds = 0.0
        self._started_in = None

    def ensure_running(self) -> None:
        """Start the timer greenlet once per process, in the worker (never in a master)."""
        if self._started_in == os.getpid():
            return
        self._started_in = os.getpid()
        self.seconds = 0.0
        try:
            from gevent import monkey
        except ImportError:
            return
        if monkey.is_module_patched("socket"):
            import gevent

            gevent.spawn(self._run)

    def _run(self) -> None:
        import gevent

        while True:
            started = time.perf_counter()
            gevent.sleep(self.INTERVAL)
            late = max(0.0, time.perf_counter() - started - self.INTERVAL)
            self.seconds += (late - self.seconds) * self.WEIGHT


class Admission:
    """WSGI middleware: the body in, then the shedding bounds, then the app."""

    def __init__(self, app, *, max_in_flight: int, max_queue_ms: float, retry_after: int,
                 body_timeout: float, max_body: int):
        self.app = app
        self.lag = LoopLag()
        self.max_queue = max_queue_ms / 1000 if max_queue_ms else None
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if _has_body(environ) and _declared(environ) <= self.max_body:
            try:
                body = read_body(environ, self.max_body, self.body_timeout)
            except _Refused as refused:
                return self.refuse(environ, start_response, refused.error)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        self.lag.ensure_running()
        with self._lock:
            admitted = environ.get("PATH_INFO") in NEVER_SHED or (
                self.in_flight < self.max_in_flight
                and (self.max_queue is None or self.lag.seconds <= self.max_queue
                     or self.in_flight < QUEUE_OF_OUR_OWN))
            if admitted:
                self.in_flight += 1
        if not admitted:
            metrics.count_shed()
            return self.refuse(environ, start_response, Overloaded(
                "the service is at capacity; retry after the time in Retry-After"),
                [("Retry-After", str(self.retry_after))])
        metrics.in_flight.inc()
        try:
            return self.app(environ, start_response)
        finally:
            metrics.in_flight.dec()
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def refuse(environ, start_response, error, headers=()):
        """An error answered here, before Flask: the same JSON body the app's handler writes."""
        body = json.dumps(error.to_dict()).encode()
        start_response(f"{error.status} {_PHRASES[error.status]}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            (logs.HEADER, logs.request_id(environ)), ("X-Content-Type-Options", "nosniff"),
            *headers])
        return [body]


_PHRASES = {408: "Request Timeout", 503: "Service Unavailable"}


def _has_body(environ) -> bool:
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or \
        "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def _declared(environ) -> int:
    """The declared length (0 when chunked: read up to the cap, then the app decides)."""
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def init_app(app) -> None:
    config = app.config
    app.wsgi_app = Admission(app.wsgi_app, max_in_flight=config["MAX_IN_FLIGHT"],
                             max_queue_ms=config["MAX_QUEUE_MS"], retry_after=config["SHED_RETRY_AFTER"],
                             body_timeout=config["BODY_TIMEOUT"], max_body=config["MAX_BODY"])
