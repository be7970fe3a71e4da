"""Bulk enrollment: a province loads its population at tens of thousands of residents a second.

Every item goes through the single enrollment's parser (:func:`residents.prepare_enrollment`),
is sealed the same way and written by the same script; only the round trips are shared: one
pipeline per Redis primary per batch (commands grouped by the node owning each slot), each
followed by WAIT where the deployment has replicas, then the audit entries likewise. A subject
already enrolled is reported and left as it is, so re-running an import resumes it.

The audit trail gets one entry per :data:`AUDIT_GROUP` residents enrolled together at one
status, listing their subject ids (``subjects``), instead of one entry each: the same facts
(who, when, whom, to which status and why) at a tenth of the memory.
"""
from __future__ import annotations

import json
import time
from typing import Iterable, Iterator

from .errors import HealthCodeError, PayloadTooLarge
from .residents import Enrollment, prepare_enrollment

#: Residents per POST /api/v1/residents/batch (documented), and per import round.
MAX_BATCH = 1000
#: Largest batch request body: 2 KiB per resident.
MAX_BATCH_BODY = 2 * 1024 * MAX_BATCH
#: Largest import line: the single enrollment's body cap.
MAX_LINE = 64 * 1024
AUDIT_GROUP = 100


def enroll_batch(store, bodies: list, actor: str, secret: bytes) -> list[dict]:
    """Validate and enroll a batch; one result per item, in order.

    A result is ``{"index", "outcome": "enrolled" | "already_enrolled", "id", "status"}`` or
    ``{"index", "outcome": "rejected", "error", "message", ...}`` (the single enrollment's
    error body).
    """
    results: list = [None] * len(bodies)
    ready: list[tuple[int, Enrollment]] = []
    for index, body in enumerate(bodies):
        try:
            ready.append((index, prepare_enrollment(body, secret)))
        except HealthCodeError as exc:
            results[index] = {"index": index, "outcome": "rejected", **exc.to_dict()}
    now = int(time.time())
    seal = store.stored_record
    items = [(e.sid, e.status, seal(e.sid, e.record, actor, now)) for _, e in ready]
    created = store.enroll_many(items, actor, reasons=[e.reasons for _, e in ready])
    for (index, e), new in zip(ready, created):
        results[index] = {"index": index, "outcome": "enrolled" if new else "already_enrolled",
                          "id": e.sid, "status": e.status}
    return results


def tally(results: Iterable[dict]) -> dict:
    counts = {"enrolled": 0, "already_enrolled": 0, "rejected": 0}
    for result in results:
        counts[result["outcome"]] += 1
    return counts


def read_lines(stream) -> Iterator[tuple[int, int, object]]:
    """(line number, bytes read, parsed body or the error) per non-blank line of a binary
    JSON-lines stream."""
    for number, raw in enumerate(stream, start=1):
        size = len(raw)
        if len(raw) > MAX_LINE:
            yield number, size, PayloadTooLarge(f"the line is longer than {MAX_LINE} bytes")
            continue
        text = raw.strip()
        if not text:
            yield number, size, None
            continue
        try:
            yield number, size, json.loads(text)
        except (ValueError, UnicodeDecodeError):
            yield number, size, HealthCodeError("the line is not valid JSON", reason="not_json")


def import_stream(store, stream, actor: str, secret: bytes, *, batch: int = MAX_BATCH,
                  progress=None, rejected=None) -> dict:
    """Enroll every line of a JSON-lines stream; returns the tally.

    :param progress: called with the bytes consumed after each batch.
    :param rejected: called with (line number, error body) for each rejected line.
    """
    counts = {"enrolled": 0, "already_enrolled": 0, "rejected": 0, "lines": 0}
    numbers: list[int] = []
    bodies: list = []
    consumed = 0

    def flush():
        nonlocal consumed
        if bodies:
            for number, result in zip(numbers, enroll_batch(store, bodies, actor, secret)):
                counts[result["outcome"]] += 1
                if result["outcome"] == "rejected" and rejected:
                    rejected(number, {k: v for k, v in result.items()
                                      if k not in ("index", "outcome")})
            numbers.clear()
            bodies.clear()
        if progress:
            progress(consumed)
            consumed = 0

    for number, size, body in read_lines(stream):
        consumed += size
        if body is None:
            continue
        counts["lines"] += 1
        if isinstance(body, HealthCodeError):
            counts["rejected"] += 1
            if rejected:
                rejected(number, body.to_dict())
            continue
        numbers.append(number)
        bodies.append(body)
        if len(bodies) >= batch:
            flush()
    flush()
    return counts
