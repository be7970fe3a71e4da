"""Gunicorn settings for ``healthcode serve`` (also usable: ``gunicorn -c python:healthcode.gunicorn_conf wsgi:app``).

Workers are stateless (state is in Redis), so scaling out is adding workers or machines.
Verification is CPU-bound (one ECDSA check per scan), so one sync worker per core, plus one to
cover the moments a worker waits on Redis.
"""
import multiprocessing
import os

bind = os.environ.get("HEALTHCODE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("HEALTHCODE_WORKERS", multiprocessing.cpu_count() + 1))
worker_class = "sync"
# A scan must answer fast or not at all: a hung request is worse than a retry.
timeout = int(os.environ.get("HEALTHCODE_WORKER_TIMEOUT", 30))
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then so a slow leak can never take the service down.
max_requests = 100_000
max_requests_jitter = 10_000
# Access log without query strings or headers: a bearer token must never reach a log.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(L)ss'
# ...and one-time sign-in tokens in paths are redacted (healthcode.gunicorn_logging).
logger_class = "healthcode.gunicorn_logging.RedactingLogger"
errorlog = "-"
loglevel = os.environ.get("HEALTHCODE_LOG_LEVEL", "info")
