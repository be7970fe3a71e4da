"""Bearer credentials per role, checked against hashes in Redis.

A checked credential is remembered in-process for ``CREDENTIAL_CACHE_SECONDS``, and keeps
working through a Redis outage if this worker has checked it before (:mod:`healthcode.cache`).
A credential never seen before cannot be checked then, and gets 503.
"""
from __future__ import annotations

import functools
import hashlib

from flask import current_app, g, request

from . import sessions
from .cache import OutageTolerantCache
from .errors import Forbidden, Unauthorized
from .store import Credential, get_store

class CredentialCache:
    """Checked bearer tokens, keyed by the token's SHA-256 (see :mod:`healthcode.cache`)."""

    def __init__(self, fresh_seconds: float):
        self._cache: OutageTolerantCache[Credential] = OutageTolerantCache(fresh_seconds)

    def lookup(self, token: str, store) -> Credential | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        return self._cache.get(key, lambda: store.check_credential(token))


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
