"""Gunicorn settings for ``healthcode serve`` (also usable: ``gunicorn -c python:healthcode.gunicorn_conf wsgi:app``).

Workers are stateless (state is in Redis), so scaling out is adding workers or machines: one
per core, plus one to cover the moments a worker waits on Redis. The values come from
:mod:`healthcode.config` (``HEALTHCODE_*``), which checks them.

Why gevent workers. A sync worker belongs to one connection from its first byte to its last:
three clients dribbling their headers at a byte a second held all of them. A gevent worker
holds each connection in a greenlet of a few kilobytes, so a slow client costs memory, not a
worker; ``HEADER_TIMEOUT`` (gunicorn's ``keepalive``, which the gevent worker also applies to
reading every request's head) and ``BODY_TIMEOUT`` (:mod:`healthcode.admission`) bound how long
one may take, and ``worker_connections`` caps how many one worker holds. CPU work runs to
completion on the worker's loop: signing and verifying are short; QR images, which take
milliseconds, are drawn in gevent's thread pool so the loop keeps answering meanwhile
(:func:`healthcode.qr.render`; measured in ``bench/slow_clients.py --only cpu``). The shedding
bounds of :mod:`healthcode.admission` keep the queue behind the CPU short.
"""
from . import config as _config
from . import gunicorn_hooks as _hooks

_settings = _config.load_env()
_config.validate_serving(_settings)

bind = _settings["BIND"]
workers = _settings["WORKERS"] or _hooks.default_workers()
worker_class = _settings["WORKER_CLASS"]
worker_connections = _settings["WORKER_CONNECTIONS"]
threads = 8 if worker_class == "gthread" else 1
# A worker whose loop is blocked this long is replaced: a hung request is worse than a retry.
timeout = _settings["WORKER_TIMEOUT"]
graceful_timeout = 20
# Under gevent this also bounds reading each request's head (a slow-header client is cut off).
keepalive = _settings["HEADER_TIMEOUT"]
# A request line or header past these is refused (400/431) before the app sees it.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
# Recycle workers now and then so a slow leak can never take the service down.
max_requests = 100_000
max_requests_jitter = 10_000
# Only healthcode.proxies decides what a forwarded header means (HEALTHCODE_TRUSTED_PROXIES):
# gunicorn's own default trusts X-Forwarded-Proto from 127.0.0.1.
secure_scheme_headers = {}
# Each instance its own control socket, beside its data (gunicorn's default is one per user).
control_socket = str(_config.runtime_path(_settings, "gunicorn.ctl").resolve())
# Access log without query strings or headers: a bearer token must never reach a log.
# With HEALTHCODE_LOG_FORMAT=json the app writes one JSON line per request instead.
accesslog = None if _settings["LOG_FORMAT"] == "json" else "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(L)ss %({x-request-id}o)s'
# ...and one-time sign-in tokens in paths are redacted (healthcode.gunicorn_logging).
logger_class = "healthcode.gunicorn_logging.RedactingLogger"
errorlog = "-"
loglevel = _settings["LOG_LEVEL"]

on_starting = _hooks.on_starting
child_exit = _hooks.child_exit
