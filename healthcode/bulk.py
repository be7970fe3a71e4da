"""Bulk enrollment: a province loads its population at tens of thousands of residents a second.

Every item goes through the single enrollment's parser (:func:`residents.prepare_enrollment`)
and is sealed the same way; the round trips are shared: one pipeline per Redis primary per
batch (commands grouped by the node owning each slot, two ``SET NX`` per resident, see
:meth:`RedisStore.enroll_many`), each followed by WAIT where the deployment has replicas, then
the audit entries likewise. A subject
already enrolled is reported and left as it is, so re-running an import resumes it.

The audit trail gets one entry per :data:`AUDIT_GROUP` residents enrolled together at one
status, listing their subject ids (``subjects``), instead of one entry each: the same facts
(who, when, whom, to which status and why) at a tenth of the memory.
"""
from __future__ import annotations

import json
import time
from typing import Iterable, Iterator

import orjson

from .errors import HealthCodeError, PayloadTooLarge, TooDeep
from .http import MAX_JSON_DEPTH, json_depth_ok
from .residents import prepare_enrollment
from .store import seal_record

#: Residents per POST /api/v1/residents/batch (documented), and per import round.
MAX_BATCH = 1000
#: Largest batch request body: 2 KiB per resident.
MAX_BATCH_BODY = 2 * 1024 * MAX_BATCH
#: Largest import line: the single enrollment's body cap.
MAX_LINE = 64 * 1024
AUDIT_GROUP = 100


def prepare_batch(bodies: list, actor: str, secret: bytes, cipher,
                  now: int | None = None) -> tuple[list, list]:
    """Validate and seal a batch: (rejected as (index, error body), ready as (index, sid,
    status, reasons, sealed record)). Pure CPU, no store: it may run in another process."""
    now = int(time.time()) if now is None else now
    rejected, ready = [], []
    for index, body in enumerate(bodies):
        if isinstance(body, HealthCodeError):
            rejected.append((index, body.to_dict()))
            continue
        try:
            e = prepare_enrollment(body, secret)
        except HealthCodeError as exc:
            rejected.append((index, exc.to_dict()))
            continue
        ready.append((index, e.sid, e.status, e.reasons,
                      seal_record(cipher, e.sid, e.record, actor, now)))
    return rejected, ready


def write_batch(store, size: int, prepared: tuple[list, list], actor: str) -> list[dict]:
    """Enroll what :func:`prepare_batch` made ready; one result per item, in order.

    A result is ``{"index", "outcome": "enrolled" | "already_enrolled", "id", "status"}`` or
    ``{"index", "outcome": "rejected", "error", "message", ...}`` (the single enrollment's
    error body).
    """
    rejected, ready = prepared
    results: list = [None] * size
    for index, error in rejected:
        results[index] = {"index": index, "outcome": "rejected", **error}
    created = store.enroll_many([(sid, status, sealed) for _, sid, status, _, sealed in ready],
                                actor, reasons=[reasons for _, _, _, reasons, _ in ready])
    for (index, sid, status, _, _), new in zip(ready, created):
        results[index] = {"index": index, "outcome": "enrolled" if new else "already_enrolled",
                          "id": sid, "status": status}
    return results


def enroll_batch(store, bodies: list, actor: str, secret: bytes) -> list[dict]:
    """Validate and enroll a batch in this process (the batch endpoint)."""
    return write_batch(store, len(bodies), prepare_batch(bodies, actor, secret, store.cipher),
                       actor)


def tally(results: Iterable[dict]) -> dict:
    counts = {"enrolled": 0, "already_enrolled": 0, "rejected": 0}
    for result in results:
        counts[result["outcome"]] += 1
    return counts


#: every digit as "0", every other byte as a space: a run of 19 digits is then a substring
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19


def parse_line(raw: bytes):
    """A JSON-lines line: the body, None for a blank line, or the error refusing it (the
    single enrollment's, for a body too long, too deep or not JSON)."""
    if len(raw) > MAX_LINE:
        return PayloadTooLarge(f"the line is longer than {MAX_LINE} bytes")
    text = raw.strip()
    if not text:
        return None
    if not json_depth_ok(text):
        return TooDeep(f"the line nests deeper than {MAX_JSON_DEPTH} levels")
    if _LONG_DIGITS not in text.translate(_DIGITS):
        # orjson costs a third of json and reads strict JSON to the same values, except
        # integers beyond 64 bits (it makes them floats): those take 19 digits or more
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        # what orjson refuses and json reads (NaN, infinities, lone surrogates, a byte order
        # mark) is read as the API's parser, json, reads it, or refused as it refuses it
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return HealthCodeError("the line is not valid JSON", reason="not_json")


def _chunks(stream, batch: int) -> Iterator[tuple[list[int], list[bytes], int]]:
    """(line numbers, raw lines, bytes read) per ``batch`` non-blank lines."""
    numbers, lines, consumed = [], [], 0
    for number, raw in enumerate(stream, start=1):
        consumed += len(raw)
        if not raw.strip():
            continue
        numbers.append(number)
        lines.append(raw)
        if len(lines) >= batch:
            yield numbers, lines, consumed
            numbers, lines, consumed = [], [], 0
    if lines or consumed:
        yield numbers, lines, consumed


_worker: dict = {}


def _init_worker(secret: bytes, cipher, actor: str) -> None:
    _worker.update(secret=secret, cipher=cipher, actor=actor)


def _prepare_lines(lines: list[bytes], secret=None, cipher=None, actor=None):
    if secret is None:  # in a worker process
        secret, cipher, actor = _worker["secret"], _worker["cipher"], _worker["actor"]
    return prepare_batch([parse_line(raw) for raw in lines], actor, secret, cipher)


def import_stream(store, stream, actor: str, secret: bytes, *, batch: int = MAX_BATCH,
                  jobs: int = 1, progress=None, rejected=None) -> dict:
    """Enroll every line of a binary JSON-lines stream; returns the tally.

    :param jobs: processes that parse and seal (the per-resident CPU cost) while this one
        writes, a few batches ahead; 1 does everything here.
    :param progress: called with the bytes consumed after each batch.
    :param rejected: called with (line number, error body) for each rejected line.
    """
    counts = {"enrolled": 0, "already_enrolled": 0, "rejected": 0, "lines": 0}

    def write(numbers, prepared, consumed):
        counts["lines"] += len(numbers)
        for number, result in zip(numbers, write_batch(store, len(numbers), prepared, actor)):
            counts[result["outcome"]] += 1
            if result["outcome"] == "rejected" and rejected:
                rejected(number, {k: v for k, v in result.items()
                                  if k not in ("index", "outcome")})
        if progress:
            progress(consumed)

    chunks = _chunks(stream, batch)
    if jobs <= 1:
        for numbers, lines, consumed in chunks:
            write(numbers, _prepare_lines(lines, secret, store.cipher, actor), consumed)
        return counts
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, initializer=_init_worker,
                             initargs=(secret, store.cipher, actor)) as pool:
        ahead: deque = deque()
        for numbers, lines, consumed in chunks:
            ahead.append((numbers, pool.submit(_prepare_lines, lines), consumed))
            if len(ahead) > 2 * jobs:  # bounded: a 100-million-line file is streamed
                numbers, future, consumed = ahead.popleft()
                write(numbers, future.result(), consumed)
        while ahead:
            numbers, future, consumed = ahead.popleft()
            write(numbers, future.result(), consumed)
    return counts
