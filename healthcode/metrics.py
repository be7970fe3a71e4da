"""Prometheus counters, per worker process.

Each gunicorn worker counts its own requests and exposes them with a ``pid`` label; a scrape
reaches one worker. Summing across workers is the collector's job (``sum without (pid)``).
Keeping the counters in-process keeps the verify hot path free of extra Redis round trips.
"""
from __future__ import annotations

import os
import threading
from collections import Counter

_lock = threading.Lock()
_requests: Counter = Counter()
_verifications: Counter = Counter()


def count_request(endpoint: str, status: int) -> None:
    with _lock:
        _requests[(endpoint, status)] += 1


def count_verification(scheme: str, outcome: str) -> None:
    with _lock:
        _verifications[(scheme, outcome)] += 1


def exposition() -> str:
    pid = os.getpid()
    lines = ["# HELP healthcode_requests_total HTTP requests by endpoint and status.",
             "# TYPE healthcode_requests_total counter"]
    with _lock:
        for (endpoint, status), n in sorted(_requests.items()):
            lines.append(f'healthcode_requests_total{{endpoint="{endpoint}",status="{status}",'
                         f'pid="{pid}"}} {n}')
        lines += ["# HELP healthcode_verifications_total Verifications by scheme and outcome.",
                  "# TYPE healthcode_verifications_total counter"]
        for (scheme, outcome), n in sorted(_verifications.items()):
            lines.append(f'healthcode_verifications_total{{scheme="{scheme}",'
                         f'outcome="{outcome}",pid="{pid}"}} {n}')
    return "\n".join(lines) + "\n"
