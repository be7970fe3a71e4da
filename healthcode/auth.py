"""Bearer credentials per role, checked against hashes in Redis.

A checked credential is remembered in-process for ``CREDENTIAL_CACHE_SECONDS``. Through a Redis
outage it keeps working for ``CREDENTIAL_OUTAGE_SECONDS`` after this worker last checked it, and
no longer (:mod:`healthcode.cache`: that bound is also how late a revocation made just before
the outage takes effect); then, like a credential never seen before, it cannot be checked and
gets 503. A token that does not have the shape of one of ours is 401 at once, outage or not.
Failed attempts are throttled per client address and per credential id
(:mod:`healthcode.throttle`).
"""
from __future__ import annotations

import functools
import hashlib

from flask import current_app, g, request

from . import sessions, throttle
from .cache import OutageTolerantCache
from .errors import Forbidden, Unauthorized
from .store import Credential, credential_id, get_store

#: longer than any token we issue: refused unread
MAX_TOKEN_LENGTH = 200


class CredentialCache:
    """Checked bearer tokens, keyed by the token's SHA-256 (see :mod:`healthcode.cache`)."""

    def __init__(self, fresh_seconds: float, outage_seconds: float):
        self._cache: OutageTolerantCache[Credential] = OutageTolerantCache(fresh_seconds,
                                                                            outage_seconds)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def lookup(self, token: str, store) -> Credential | None:
        return self._cache.get(self._key(token), lambda: store.check_credential(token))

    def known(self, token: str) -> bool:
        """Whether this worker has found ``token`` good before: then it is no guess."""
        return self._cache.known(self._key(token))


def init_app(app) -> None:
    app.extensions["healthcode.credentials"] = CredentialCache(
        app.config["CREDENTIAL_CACHE_SECONDS"], app.config["CREDENTIAL_OUTAGE_SECONDS"])


def check_token(token: str) -> Credential:
    """The credential a bearer token (or a sign-in page's access code) names.

    :class:`Unauthorized` when it names none, :class:`~healthcode.errors.RateLimited` when
    this address or this credential id has failed too often (:mod:`healthcode.throttle`),
    :class:`~healthcode.errors.StoreUnavailable` when it cannot be checked now.
    """
    cache: CredentialCache = current_app.extensions["healthcode.credentials"]
    cred_id = credential_id(token) if len(token) <= MAX_TOKEN_LENGTH else None
    if cred_id is None:  # not one of ours, whatever Redis would say: no round trip for it
        throttle.check_address()
        throttle.failed()
        raise Unauthorized("unknown credential")
    if not cache.known(token):
        throttle.check_address()
    credential = cache.lookup(token, get_store())
    if credential is None:
        throttle.failed(cred_id)
        raise Unauthorized("unknown credential")
    return credential


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
    credential = check_token(token)
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
