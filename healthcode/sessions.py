"""Page sign-in: server-side sessions in Redis, one-time sign-in links, and CSRF tokens.

Why server-side sessions: the cookie carries only a random session id (HttpOnly, SameSite=Strict,
Secure unless disabled), so no script and no other site can read or send the credential, and
signing out or revoking the credential ends the session on the server. Redis holds the session
under the SHA-256 of its id, so a copy of the store yields no usable cookie.

A session references the credential it was opened with (its id, never its secret); the
credential is checked to still exist whenever the session is read, so revoking it with the CLI
signs its pages out. A one-time link instead opens a session for one resident, with no bearer
credential behind it: the link is its proof, used once.

CSRF tokens are HMACs (keyed with ``SECRET_KEY``) of the value of a SameSite=Strict cookie: the
session id once signed in, a random form nonce before. Another site can neither read the cookie
nor compute the token; a form or script of ours gets it from the page.

Like credentials (see :mod:`healthcode.auth`), a session read recently stays usable in-process
while Redis is down, so a checkpoint's scanner page keeps verifying through a short store outage
(``CREDENTIAL_OUTAGE_SECONDS`` after the session was last read, see :mod:`healthcode.cache`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask import current_app, g, request

from .cache import STALE_SECONDS, OutageTolerantCache
from .errors import ConfigurationError, Forbidden
from .record import format_time
from .secretfile import configured_or_file
from .store import Credential, get_store, wraps_redis

COOKIE = "hc_session"
#: "this device was signed in to a page before": no secret, only lets the sign-in page tell an
#: expired sign-in from a first visit once the session cookie itself has gone
SEEN_COOKIE = "hc_seen"
SEEN_SECONDS = 365 * 86400
FORM_COOKIE = "hc_form"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SECRET_FILE = "session.secret"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class PageSession:
    id: str  # the cookie value; Redis only ever sees its hash
    credential: Credential
    kind: str  # "token": signed in with a bearer credential; "link": with a one-time link


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _session_key(session_id: str) -> str:
    return f"hc:sess:{_digest(session_id)}"


def _link_key(token: str) -> str:
    return f"hc:link:{_digest(token)}"


def _credential_key(cred_id: str) -> str:
    # the credential hash of store.RedisStore.create_credential (see the store's key table)
    return f"hc:cred:{cred_id}"


class SessionStore:
    """Sessions and one-time links in Redis, with a small in-process cache of sessions."""

    def __init__(self, redis_client, ttl: int, link_ttl: int, fresh_seconds: float,
                 max_entries: int = 10_000, outage_seconds: float = STALE_SECONDS):
        self.r = redis_client
        self.ttl = ttl
        self.link_ttl = link_ttl
        self._cache: OutageTolerantCache[PageSession] = OutageTolerantCache(
            fresh_seconds, outage_seconds, max_entries)

    @wraps_redis
    def create(self, credential: Credential, kind: str) -> PageSession:
        session_id = secrets.token_urlsafe(32)
        value = {"cred": credential.id, "role": credential.role, "subject": credential.subject,
                 "label": credential.label, "kind": kind, "mode": credential.mode,
                 "at": format_time(datetime.now(timezone.utc))}
        self.r.set(_session_key(session_id), json.dumps(value), ex=self.ttl)
        return PageSession(session_id, credential, kind)

    def load(self, session_id: str) -> PageSession | None:
        """The live session with this id; None when unknown, expired or its credential gone."""
        if not session_id or len(session_id) > 100:
            return None
        return self._cache.get(_session_key(session_id), lambda: self._read(session_id))

    @wraps_redis
    def _read(self, session_id: str) -> PageSession | None:
        raw = self.r.get(_session_key(session_id))
        if raw is None:
            return None
        value = json.loads(raw)
        if value["kind"] == "token" and not self.r.exists(_credential_key(value["cred"])):
            self.r.delete(_session_key(session_id))  # the credential was revoked
            return None
        credential = Credential(value["cred"], value["role"], value.get("subject"),
                                value.get("label"), value.get("mode"))
        return PageSession(session_id, credential, value["kind"])

    @wraps_redis
    def end(self, session_id: str) -> None:
        key = _session_key(session_id)
        self._cache.forget(key)
        self.r.delete(key)

    @wraps_redis
    def create_link(self, sid: str) -> tuple[str, datetime]:
        """A one-time sign-in token for resident ``sid``; only its hash is stored."""
        token = secrets.token_urlsafe(24)
        self.r.set(_link_key(token), sid, ex=self.link_ttl)
        expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(
            seconds=self.link_ttl)
        return token, expires

    @wraps_redis
    def link_alive(self, token: str) -> bool:
        """Whether a link can still be used, without using it."""
        return 0 < len(token) <= 100 and bool(self.r.exists(_link_key(token)))

    @wraps_redis
    def redeem_link(self, token: str) -> str | None:
        """The link's subject, consuming the link: GET and DEL in one transaction, so two
        simultaneous clicks cannot both sign in."""
        if not token or len(token) > 100:
            return None
        with self.r.pipeline(transaction=True) as pipe:
            pipe.get(_link_key(token))
            pipe.delete(_link_key(token))
            sid, _ = pipe.execute()
        return sid


# -- secrets and CSRF -----------------------------------------------------------------------------

def load_secret(configured: str | None, data_dir, create: bool = True) -> str:
    """The configured key, else the data dir's, generated on first use (mode 0600) when
    ``create`` allows (see :func:`healthcode.secretfile.configured_or_file`)."""
    return configured_or_file(configured, Path(data_dir) / SECRET_FILE, "HEALTHCODE_SECRET_KEY",
                              create=create)


def _csrf_for(bound_to: str) -> str:
    key = current_app.config["SECRET_KEY"].encode("utf-8")
    return hmac.new(key, b"csrf\0" + bound_to.encode("utf-8"), hashlib.sha256).hexdigest()


def csrf_token() -> str:
    """The CSRF token for this request's forms and scripts.

    Bound to the session when signed in, else to a form nonce cookie (set on the response),
    so that even the sign-in form cannot be posted from another site.
    """
    session = current_session()
    if session is not None:
        return _csrf_for(session.id)
    nonce = request.cookies.get(FORM_COOKIE) or g.get("hc_form_nonce")
    if not nonce:
        nonce = g.hc_form_nonce = secrets.token_urlsafe(24)
    return _csrf_for(nonce)


def csrf_ok() -> bool:
    """Whether this request carries the CSRF token of its session or form cookie."""
    supplied = request.headers.get(CSRF_HEADER)
    if not supplied and request.mimetype in _FORM_TYPES:
        supplied = request.form.get(CSRF_FIELD)
    if not supplied:
        return False
    session = current_session()
    bound_to = session.id if session is not None else request.cookies.get(FORM_COOKIE)
    return bool(bound_to) and hmac.compare_digest(supplied, _csrf_for(bound_to))


def require_csrf() -> None:
    if not csrf_ok():
        raise Forbidden("missing or wrong CSRF token", reason="csrf_failed")


# -- the request's session ------------------------------------------------------------------------

def get_sessions() -> SessionStore:
    return current_app.extensions["healthcode.sessions"]


def current_session() -> PageSession | None:
    """The session named by this request's cookie, if it is live."""
    if "hc_session" not in g:
        g.hc_session = get_sessions().load(request.cookies.get(COOKIE, ""))
    return g.hc_session


def cookie_credential() -> Credential | None:
    """The credential of a cookie-authenticated request, for :func:`auth.current_credential`.

    An unsafe method must carry the session's CSRF token: the cookie alone proves only that
    the browser sent it, not that our page asked it to.
    """
    if not request.cookies.get(COOKIE):
        return None
    session = current_session()
    if session is None:
        return None
    if request.method not in SAFE_METHODS:
        require_csrf()
    return session.credential


def start(response, credential: Credential, kind: str) -> PageSession:
    """Open a new session (a fresh id each time: no fixation) and set its cookie."""
    old = current_session()
    if old is not None:
        get_sessions().end(old.id)
    session = get_sessions().create(credential, kind)
    _set_cookie(response, COOKIE, session.id, current_app.config["SESSION_TTL"])
    _set_cookie(response, SEEN_COOKIE, "1", SEEN_SECONDS)
    response.delete_cookie(FORM_COOKIE, path="/")
    g.hc_session = session
    get_store().audit("page_signin", actor=f"{credential.role}:{credential.id}",
                      subject=credential.subject, kind=kind)
    return session


def finish(response) -> None:
    """End this request's session, on the server and in the browser."""
    session = current_session()
    if session is not None:
        get_sessions().end(session.id)
    g.hc_session = None
    for name in (COOKIE, SEEN_COOKIE):  # signed out on purpose: nothing has "expired"
        response.delete_cookie(name, path="/", httponly=True, samesite="Strict",
                               secure=current_app.config["SECURE_COOKIES"])


def sign_in_lapsed() -> bool:
    """This device had a page sign-in that is no longer valid (expired or ended elsewhere)."""
    had = request.cookies.get(COOKIE) or request.cookies.get(SEEN_COOKIE)
    return bool(had) and current_session() is None


def _set_cookie(response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=current_app.config["SECURE_COOKIES"])


def init_app(app) -> None:
    app.config["SECRET_KEY"] = load_secret(app.config.get("SECRET_KEY"), app.config["DATA_DIR"],
                                           create=bool(app.config["GENERATE_SECRETS"]))
    if app.config.get("SECURE_COOKIES") is None:
        app.config["SECURE_COOKIES"] = not app.testing
    for name in ("SESSION_TTL", "LINK_TTL"):
        if not 60 <= int(app.config[name]) <= 90 * 86400:
            raise ConfigurationError(f"HEALTHCODE_{name} must be between 60 s and 90 days")
    app.extensions["healthcode.sessions"] = SessionStore(
        app.extensions["healthcode.store"].r, ttl=int(app.config["SESSION_TTL"]),
        link_ttl=int(app.config["LINK_TTL"]),
        fresh_seconds=app.config["CREDENTIAL_CACHE_SECONDS"],
        outage_seconds=app.config["CREDENTIAL_OUTAGE_SECONDS"])

    @app.after_request
    def set_form_cookie(response):
        nonce = g.get("hc_form_nonce")
        if nonce and not request.cookies.get(FORM_COOKIE):
            # lives as long as a sign-in form may sit open on a checkpoint's screen
            _set_cookie(response, FORM_COOKIE, nonce, 86400)
        return response
