"""``Idempotency-Key`` for the writes that create or change a resident.

Follows the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header): the client sends a unique key with a POST or PUT;
the first request with that key is processed and its answer (status and body) kept for 24
hours; a retry with the same key and the same request gets that answer again and changes
nothing. As the draft requires, a retry while the first is still being processed is answered
409 (``idempotency_key_in_use``), and the same key with a different request 422
(``idempotency_key_reused``). Keys are scoped per credential, so two clients cannot collide.

The key is claimed atomically (``SET NX``) before the write, so two concurrent duplicates cannot
both apply. A claim expires after a minute if its worker dies mid-request. Answers to bad
requests (4xx) are kept too: the same request would fail the same way. A failure of the store
releases the claim, so the retry runs again, except a write that was made but not confirmed by
the replicas (:class:`~healthcode.store.NotReplicated`): its answer is kept as unconfirmed, and
the retry answers it once the replicas have confirmed (instead of enrolling twice, or
answering "already enrolled").
"""
from __future__ import annotations

import functools
import hashlib
import json

from flask import jsonify, make_response, request

from .auth import current_credential
from .errors import (HealthCodeError, IdempotencyKeyInUse, IdempotencyKeyReused,
                     InvalidField)
from .http import json_body
from .store import NotReplicated, get_store

HEADER = "Idempotency-Key"
KEEP_SECONDS = 24 * 3600
CLAIM_SECONDS = 60
MAX_KEY_LENGTH = 255


def _key() -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    # The draft makes the value a Structured Field sf-string ("..."); bare tokens are common.
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidField(HEADER, f"1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def _fingerprint() -> str:
    canonical = json.dumps(json_body(), sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(f"{request.method} {request.path} {canonical}".encode()).hexdigest()


def _replay(answer: dict):
    response = make_response(jsonify(answer["body"]), answer["status"])
    if answer.get("location"):
        response.headers["Location"] = answer["location"]
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _kept(fingerprint: str, response) -> dict:
    return {"state": "done", "fp": fingerprint, "status": response.status_code,
            "body": response.get_json(), "location": response.headers.get("Location")}


def idempotent(respond):
    """Make a view idempotent under an ``Idempotency-Key``.

    :param respond: builds the view's response from the answer a :class:`NotReplicated`
        carries (the same function the view uses for its own answer).
    """

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            key = _key()
            if key is None:
                return view(*args, **kwargs)
            scope = current_credential().id
            fingerprint = _fingerprint()
            store = get_store()
            kept = store.idempotency_reserve(scope, key, {"state": "pending", "fp": fingerprint},
                                             CLAIM_SECONDS)
            if kept is not None:
                return _answer_again(store, scope, key, kept, fingerprint)
            try:
                response = make_response(view(*args, **kwargs))
            except NotReplicated as exc:
                if exc.answer is None:
                    store.idempotency_release(scope, key)
                else:
                    answer = _kept(fingerprint, make_response(respond(exc.answer)))
                    store.idempotency_save(scope, key, {**answer, "state": "unconfirmed",
                                                        "confirm": exc.key}, KEEP_SECONDS)
                raise
            except HealthCodeError as exc:
                if exc.status >= 500:
                    store.idempotency_release(scope, key)
                else:
                    store.idempotency_save(scope, key, {
                        "state": "done", "fp": fingerprint, "status": exc.status,
                        "body": exc.to_dict()}, KEEP_SECONDS)
                raise
            except Exception:
                store.idempotency_release(scope, key)
                raise
            store.idempotency_save(scope, key, _kept(fingerprint, response), KEEP_SECONDS)
            return response

        return wrapper

    return decorator


def _answer_again(store, scope, key, kept: dict, fingerprint: str):
    if kept.get("fp") != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request; "
                                   "use a new key for a new request")
    if kept["state"] == "pending":
        raise IdempotencyKeyInUse("a request with this Idempotency-Key is still being "
                                  "processed; retry shortly")
    if kept["state"] == "unconfirmed":
        store.confirm(kept["confirm"])  # NotReplicated (503) again if still not confirmed
        kept = {k: v for k, v in kept.items() if k != "confirm"} | {"state": "done"}
        store.idempotency_save(scope, key, kept, KEEP_SECONDS)
    return _replay(kept)
