"""Prometheus metrics for the whole service, not one worker.

A scrape of ``/metrics`` reaches one gunicorn worker at random. With prometheus_client's
multiprocess mode every worker writes its counts to memory-mapped files in one directory
(``PROMETHEUS_MULTIPROC_DIR``, which ``healthcode serve`` points at a fresh ``<data dir>/metrics``)
and any worker's exposition reads them all, so the numbers are the service's. Outside that
mode (tests, ``flask run``) the counts are the process's own. Counting stays in-process (an mmap
write, no Redis round trip), so the verify hot path is not slowed.

The directory must be in the environment before prometheus_client is imported (it picks its
storage at import): ``healthcode serve`` sets it before gunicorn forks, and nothing imports this
module earlier in the master.

Label values come from fixed vocabularies only (routes, status codes, scheme names, reason
codes, policy rule names), never from request data, so a client cannot grow the series.
"""
from __future__ import annotations

import re

from prometheus_client import (REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)
from prometheus_client import multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)

requests_total = Counter("healthcode_requests_total", "HTTP requests by endpoint and status.",
                         ("endpoint", "status"))
request_seconds = Histogram("healthcode_request_duration_seconds",
                            "Time in the application per request, by endpoint.", ("endpoint",),
                            buckets=_LATENCY_BUCKETS)
verifications_total = Counter("healthcode_verifications_total",
                              "Verifications by scheme and outcome (valid, or the reason).",
                              ("scheme", "outcome"))
conversions_total = Counter("healthcode_conversions_total",
                            "Conversions by partner scheme, target scheme and outcome "
                            "(converted, or the reason).", ("partner", "to", "outcome"))
conversion_rules_total = Counter("healthcode_conversion_rules_total",
                                 "Policy rules by partner: fired (passed) or refused.",
                                 ("partner", "rule", "result"))
redis_seconds = Histogram("healthcode_redis_duration_seconds",
                          "Time of each store operation (one or more Redis commands).",
                          ("operation",), buckets=_LATENCY_BUCKETS)
redis_errors_total = Counter("healthcode_redis_errors_total",
                             "Store operations that failed because Redis was unavailable.",
                             ("operation",))
shed_total = Counter("healthcode_shed_total",
                     "Requests answered 503 at once because the worker was at its in-flight cap.")
in_flight = Gauge("healthcode_in_flight_requests", "Requests being worked on, all workers.",
                  multiprocess_mode="livesum")

_RULE = re.compile(r"^policy: (accept|grant\[\d+\]|require\[\d+\]|max validity)")


def count_request(endpoint: str, status: int, seconds: float | None = None) -> None:
    requests_total.labels(endpoint, str(status)).inc()
    if seconds is not None:
        request_seconds.labels(endpoint).observe(seconds)


def count_verification(scheme: str, outcome: str) -> None:
    verifications_total.labels(scheme, outcome).inc()


def count_conversion(partner: str, to: str, outcome: str, trace: list[str] = (),
                     refused_by: str | None = None) -> None:
    """One conversion; the policy rules its trace says fired, and the one that refused it."""
    conversions_total.labels(partner, to, outcome).inc()
    for line in trace:
        match = _RULE.match(line)
        if match:
            conversion_rules_total.labels(partner, match.group(1), "fired").inc()
    if refused_by:
        conversion_rules_total.labels(partner, refused_by, "refused").inc()


def observe_redis(operation: str, seconds: float, failed: bool) -> None:
    redis_seconds.labels(operation).observe(seconds)
    if failed:
        redis_errors_total.labels(operation).inc()


def count_shed() -> None:
    shed_total.inc()


def exposition(directory: str | None = None) -> bytes:
    """The text format: the whole service's when ``directory`` (multiprocess mode) is given."""
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
