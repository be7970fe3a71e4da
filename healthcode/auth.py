"""Bearer credentials per role, checked against hashes in Redis.

A checked credential is remembered in-process for ``CREDENTIAL_CACHE_SECONDS`` so the hot verify
path costs no extra Redis round trip. While Redis is down, a credential this worker has already
checked keeps working (for at most ``STALE_SECONDS``): verification must survive a store outage,
and a checkpoint whose credential was good a minute ago has not become an attacker. A
credential never seen before cannot be checked then, and gets 503.
"""
from __future__ import annotations

import functools
import hashlib
import threading
import time

from flask import current_app, g, request

from . import sessions
from .errors import Forbidden, StoreUnavailable, Unauthorized
from .store import Credential, get_store

STALE_SECONDS = 3600


class CredentialCache:
    def __init__(self, fresh_seconds: float, max_entries: int = 10_000):
        self.fresh = fresh_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Credential, float]] = {}
        self._lock = threading.Lock()

    def lookup(self, token: str, store) -> Credential | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry and now - entry[1] < self.fresh:
            return entry[0]
        try:
            credential = store.check_credential(token)
        except StoreUnavailable:
            if entry and now - entry[1] < STALE_SECONDS:
                return entry[0]
            raise
        with self._lock:
            if credential is None:
                self._entries.pop(key, None)
            else:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (credential, now)
        return credential


def init_app(app) -> None:
    app.extensions["healthcode.credentials"] = CredentialCache(
        app.config["CREDENTIAL_CACHE_SECONDS"])


def current_credential() -> Credential:
    """The request's credential; :class:`Unauthorized` when missing or unknown.

    A bearer header wins; without one, the pages' session cookie stands for the credential it
    was opened with (:mod:`healthcode.sessions`, which demands a CSRF token on unsafe methods).
    """
    if "credential" in g:
        return g.credential
    header = request.headers.get("Authorization", "")
    if not header:
        credential = sessions.cookie_credential()
        if credential is not None:
            g.credential = credential
            return credential
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    if len(token) > 200:
        raise Unauthorized("unknown credential")
    cache: CredentialCache = current_app.extensions["healthcode.credentials"]
    credential = cache.lookup(token, get_store())
    if credential is None:
        raise Unauthorized("unknown credential")
    g.credential = credential
    return credential


def require(*roles: str):
    """Allow the view only for credentials of these roles."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            credential = current_credential()
            if credential.role not in roles:
                raise Forbidden(f"a {credential.role} credential may not do this")
            return view(*args, **kwargs)

        wrapper.roles = roles
        return wrapper

    return decorator


def require_subject_access(sid: str) -> Credential:
    """Authority credentials see everyone; a resident credential only its own subject."""
    credential = current_credential()
    if credential.role == "authority":
        return credential
    if credential.role == "resident" and credential.subject == sid:
        return credential
    raise Forbidden("this credential may not see this resident")


def actor() -> str:
    """Who is acting, for the audit trail: the credential's id and role, never its secret."""
    credential = current_credential()
    return f"{credential.role}:{credential.id}"
