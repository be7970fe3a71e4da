"""Pages for people: the resident's code page (``/me``), the checkpoint scanner (``/checkpoint``),
sign-in and sign-out, and one-time sign-in links.

Two blueprints: ``bp`` serves HTML and answers its errors as translated pages; ``api_bp`` serves
the JSON the pages' scripts and the authorities call, with the service's JSON errors.

Safe pages (issue 5): no inline scripts (the Content-Security-Policy set here on every response
forbids them, so the scripts' words and data travel as JSON data blocks); no personal data in
URLs or titles (the resident page is ``/me`` for everyone, its code is fetched from ``/me/code``);
the credential lives in a server-side session behind an HttpOnly SameSite=Strict cookie, and
every form post carries a CSRF token.
"""
from __future__ import annotations

import base64
import hashlib
import time

from flask import (Blueprint, current_app, jsonify, make_response, redirect, render_template,
                   request, url_for)
from flask_babel import gettext

from .. import (i18n, page_texts, residents, scanner_offline, sessions, status_push,
                throttle)
from ..assets import asset_url
from ..auth import actor, check_token, current_credential, require
from ..errors import (Forbidden, HealthCodeError, NotFound, RateLimited, StoreUnavailable,
                      Unauthorized)
from ..http import created
from ..record import format_time
from ..rules.service import get_modes
from ..store import Credential, get_store
from ..subject import is_subject_id

bp = Blueprint("pages", __name__)
api_bp = Blueprint("pages_api", __name__)

#: the page each role signs in to; other roles are API clients and have none
PAGE_OF_ROLE = {"resident": "me", "checkpoint": "checkpoint"}

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    # QR images arrive as data: URIs; the scanner draws camera frames through blob:/canvas
    "img-src 'self' data: blob:",
    "media-src 'self' blob: mediastream:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

#: The signed-in scanner page alone may compile WebAssembly: its camera decoder is zxing-cpp
#: built to wasm (vendor/zxing_reader.wasm, served by this app). 'wasm-unsafe-eval' allows
#: WebAssembly.compile/instantiate and nothing else; 'unsafe-eval' (eval, new Function) stays
#: forbidden, and every other page keeps the plain policy.
CHECKPOINT_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'")


@bp.after_app_request
def security_headers(response):
    """Every response, JSON included: a policy on a JSON body costs nothing and covers any
    HTML an error path might produce."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("Permissions-Policy",
                                "camera=(self), microphone=(), geolocation=()")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


# -- rendering ------------------------------------------------------------------------------------

def _page(template: str, status: int = 200, **context):
    if "csrf" not in context:  # not setdefault: that would ask the store even when given
        context["csrf"] = sessions.csrf_token()
    if "signed_in" not in context:
        context["signed_in"] = sessions.current_session()
    response = make_response(render_template(template, text=i18n.client_text(), **context),
                             status)
    # Pages carry a live code or a CSRF token: no cache, shared or private, may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response


def _signin(target: str, error: str | None = None, status: int = 200, **values):
    # A SameSite=Strict cookie is not sent when another site links here, so a signed-in
    # resident arriving from, say, a webmail link would see the sign-in form. Reloading from
    # our own origin sends it.
    if (error is None and request.method == "GET"
            and request.headers.get("Sec-Fetch-Site") == "cross-site"):
        return _page("reload.html", title=_title(target))
    signed_out = request.args.get("signed_out") == "1"
    # A session cookie the store no longer knows: the sign-in ran out (or was ended). Say so,
    # and how to get back in; a resident never had an hc_ access code to type.
    expired = error is None and not signed_out and sessions.sign_in_lapsed()
    response = _page("signin.html", status=status, target=target, title=_title(target),
                     error=i18n.error_text(error, **values) if error else None,
                     signed_out=signed_out, expired=expired,
                     help=page_texts.signin_help() if target == "me" else None)
    # The service's word that this browser has no page session here (signed out, expired,
    # another role): the scanner's service worker drops its kept copy of the page, which holds
    # the ended session's CSRF token, when a navigation to /checkpoint is answered with this.
    response.headers["X-Healthcode-Page"] = "signin"
    return response


def _target() -> str:
    """The page a sign-in or sign-out form came from, from a fixed list (no open redirect)."""
    wanted = request.form.get("next")
    return wanted if wanted in PAGE_OF_ROLE.values() else "me"


def _title(target: str) -> str:
    return gettext("Health code") if target == "me" else gettext("Checkpoint scanner")


def _code_view(issued: residents.IssuedCode) -> dict:
    """What the resident page shows of a code: the QR image travels inline with its data, so
    the picture and the words always belong to the same token.

    The image is a PNG of one pixel per module (a few hundred bytes; the page scales it up
    crisply), so a renewal costs well under a kilobyte instead of a 68 KB SVG.
    """
    claims = issued.claims
    png = residents.image(issued.token, residents.PAGE_IMAGE, current_app.config["CODE_TTL"])
    return {
        "status": claims.status,
        "masked_name": claims.masked_name,
        "issued_at": format_time(claims.issued_at),
        "expires_at": format_time(claims.expires_at),
        "status_version": claims.status_version,
        "issued_ms": int(claims.issued_at.timestamp() * 1000),
        "expires_ms": int(claims.expires_at.timestamp() * 1000),
        "now_ms": int(time.time() * 1000),
        "advice": _advice(claims),
        "image": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
    }


def _advice(claims) -> dict | None:
    """Why the code is yellow or red and what to do, from the reasons on record."""
    if claims.status == "green":
        return None
    return page_texts.advice_for(claims.status, residents.show(claims.subject_id)["reasons"])


@bp.errorhandler(HealthCodeError)
def page_error(error: HealthCodeError):
    # No session look-up here: the error may be the store being down, and asking it again
    # would turn a translated 503 page into a 500.
    if isinstance(error, RateLimited):  # a guessing throttle (pages have no look-ups)
        return _too_many(_page("error.html", status=error.status, title=_title("me"),
                               message=i18n.error_text("too_many_attempts",
                                                       seconds=_retry_after(error)),
                               csrf="", signed_in=None), error)
    response = _page("error.html", status=error.status, title=_title("me"),
                     message=i18n.error_text(error.reason), csrf="", signed_in=None)
    if isinstance(error, StoreUnavailable):
        response.headers["Retry-After"] = str(current_app.config["RETRY_AFTER"])
    return response


def _retry_after(error: RateLimited) -> int:
    return int(error.detail.get("retry_after", current_app.config["AUTH_FAILURE_WINDOW"]))


def _too_many(response, error: RateLimited):
    response.headers["Retry-After"] = str(_retry_after(error))
    return response


# -- the pages ------------------------------------------------------------------------------------

@bp.get("/me")
def me():
    session = sessions.current_session()
    if session is None:
        return _signin("me")
    if session.credential.role != "resident":
        return _signin("me", error="wrong_page")
    issued = residents.current_code(session.credential.subject)
    code = _code_view(issued)
    # the QR travels once: in the <img>, not again in the script's data
    page_code = {k: v for k, v in code.items() if k != "image"}
    return _page("me.html", title=_title("me"), code=code, advice=code["advice"],
                 status_label=str(i18n.STATUS_LABELS[code["status"]]),
                 page_data={"code": page_code, "code_url": url_for("pages_api.me_code"),
                            "events_url": url_for("pages_api.me_events"),
                            "worker_url": url_for("pages.me_worker"),
                            "worker_scope": url_for("pages.me")})


@bp.get("/me/offline")
def me_offline():
    """What the resident page's service worker shows when /me cannot be reached: out of date,
    with no code. Nothing personal is in it; its script shows what the page kept on the device."""
    return _page("me_offline.html", title=_title("me"), csrf="", signed_in=None)


#: what the offline stand-in for /me needs, kept by the resident page's service worker
ME_WORKER_ASSETS = ("css/site.css", "js/prefs.js", "js/me-offline.js")


@bp.get("/me-sw.js")
def me_worker():
    """The resident page's service worker, served from the root so that it may control
    ``/me`` itself (a worker's scope cannot reach above its own path)."""
    assets = [asset_url(name) for name in ME_WORKER_ASSETS]
    body = render_template("me-sw.js", page_url=url_for("pages.me"),
                           offline_url=url_for("pages.me_offline"), assets=assets,
                           version=hashlib.sha256("".join(assets).encode()).hexdigest()[:12])
    response = make_response(body)
    response.mimetype = "text/javascript"
    response.headers["Cache-Control"] = "no-cache"  # a new release's worker is seen at once
    return response


@bp.get("/checkpoint")
def checkpoint():
    session = sessions.current_session()
    if session is None:
        return _signin("checkpoint")
    if session.credential.role != "checkpoint":
        return _signin("checkpoint", error="wrong_page")
    response = _page("checkpoint.html", title=_title("checkpoint"), mode=_active_mode(session),
                     page_data={
        "verify_url": url_for("api.verify"), "lookup_url": url_for("lookup.lookup"),
        "keep": 5, **scanner_offline.page_data(),
        # content-hashed, so the page must be told: the decoder fetches it itself
        "zxing_wasm_url": asset_url(scanner_offline.ZXING_WASM),
        # loaded when needed, not with the page (issue 13.11): see scanner_offline.LATER
        "scripts": {name: asset_url(path) for name, path in scanner_offline.LATER.items()},
        "worker_url": url_for("pages.checkpoint_worker"), "worker_scope": url_for(
            "pages.checkpoint")})
    # the service worker keeps only the signed-in scanner, never a sign-in or error page
    response.headers["X-Healthcode-Page"] = "checkpoint"
    response.headers["Content-Security-Policy"] = CHECKPOINT_CONTENT_SECURITY_POLICY
    return response


@bp.get("/checkpoint-sw.js")
def checkpoint_worker():
    """The scanner's service worker. Served from the root (a worker's scope cannot reach above
    its own path) and registered for ``/checkpoint`` only."""
    body = render_template("checkpoint-sw.js", page_url=url_for("pages.checkpoint"),
                           bundle_url=scanner_offline.BUNDLE_PATH,
                           assets=[asset_url(a) for a in scanner_offline.WORKER_ASSETS],
                           version=scanner_offline.worker_version(current_app.static_folder))
    response = make_response(body)
    response.mimetype = "text/javascript"
    # a browser checks for a new worker on every navigation; it must see a changed one at once
    response.headers["Cache-Control"] = "no-cache"
    return response


def _active_mode(session) -> dict | None:
    """The checkpoint mode the signed-in credential is bound to, described in the page's
    language (its rules apply to every scan: rules/service.py)."""
    name = session.credential.mode
    if not name:
        return None
    mode = get_modes().get(name)
    tag = i18n.LANGUAGES.get(i18n.current_language())
    return {"name": name, "description": mode.describe(tag) if mode else name}


@bp.post("/signin")
def signin():
    target = _target()
    if not sessions.csrf_ok():
        return _signin(target, error="csrf_failed", status=403)
    token = (request.form.get("token") or "").strip()
    try:
        credential = check_token(token)
    except Unauthorized:
        return _signin(target, error="bad_credential", status=401)
    except RateLimited as error:
        return _too_many(_signin(target, error="too_many_attempts", status=429,
                                 seconds=_retry_after(error)), error)
    page = PAGE_OF_ROLE.get(credential.role)
    if page is None:
        return _signin(target, error="no_page", status=403)
    response = redirect(url_for(f"pages.{page}"), code=303)
    sessions.start(response, credential, "token")
    return response


@bp.post("/signout")
def signout():
    target = _target()
    response = redirect(url_for(f"pages.{target}", signed_out=1), code=303)
    if sessions.current_session() is None:
        return response  # already over (expired, or ended elsewhere): nothing to protect
    sessions.require_csrf()
    sessions.finish(response)
    return response


@bp.get("/me/login/<token>")
def link(token):
    """A one-time link only shows a button: link previews in chat apps fetch the URL, and
    must not use the link up before the resident opens it."""
    throttle.check_address()  # a link is a secret too: guessing at them is throttled
    if not sessions.get_sessions().link_alive(token):
        throttle.failed(what="sign-in links")
        return _page("error.html", status=410, title=_title("me"),
                     message=i18n.error_text("link_used"))
    return _page("link.html", title=_title("me"), token=token)


@bp.post("/me/login/<token>")
def redeem(token):
    if not sessions.csrf_ok():
        return _page("error.html", status=403, title=_title("me"),
                     message=i18n.error_text("csrf_failed"))
    throttle.check_address()
    sid = sessions.get_sessions().redeem_link(token)
    if sid is None:
        throttle.failed(what="sign-in links")
        return _page("error.html", status=410, title=_title("me"),
                     message=i18n.error_text("link_used"))
    link_id = "link-" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]
    response = redirect(url_for("pages.me"), code=303)
    sessions.start(response, Credential(link_id, "resident", sid, "one-time link"), "link")
    return response


# -- JSON for the pages and for authorities -------------------------------------------------------

@api_bp.get("/me/code")
def me_code():
    """The signed-in resident's current code, with its QR image, for the page to refresh."""
    credential = current_credential()
    if credential.role != "resident":
        raise Forbidden("only a resident has a code page")
    response = jsonify(_code_view(residents.current_code(credential.subject)))
    response.headers["Cache-Control"] = "no-store"
    return response


@api_bp.get("/me/events")
def me_events():
    """Server-sent events: ``status`` as soon as the signed-in resident's status changes.

    ``?v=`` is the status version the page shows; a change made between the page's load and
    this request is sent at once. The stream ends after ``STATUS_STREAM_SECONDS`` and the
    browser's EventSource reconnects on its own; comments keep idle proxies from closing it.
    """
    credential = current_credential()
    if credential.role != "resident":
        raise Forbidden("only a resident has a code page")
    config = current_app.config
    if not config["STATUS_STREAMS"]:
        raise StoreUnavailable("status push is switched off; the page renews on its own")
    sid = credential.subject
    try:
        known = int(request.args.get("v", "0"))
    except ValueError:
        known = 0
    hub = status_push.get_hub()
    waiter = hub.register(sid)
    if waiter is None:
        raise StoreUnavailable("this worker holds as many status streams as it may")
    current = get_store().current_status(sid)
    lifetime = int(config["STATUS_STREAM_SECONDS"])

    def events():
        try:
            yield "retry: 3000\n\n"
            if current is not None and current[1] != known:
                yield _status_event(*current)
            deadline = time.monotonic() + lifetime
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if waiter.event.wait(min(HEARTBEAT_SECONDS, left)):
                    waiter.event.clear()
                    if waiter.change is not None:
                        yield _status_event(*waiter.change)
                else:
                    yield ": still here\n\n"
        finally:
            hub.unregister(sid, waiter)

    response = current_app.response_class(events(), mimetype="text/event-stream")
    # also when the client goes before the first event, and the generator never started
    response.call_on_close(lambda: hub.unregister(sid, waiter))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
    return response


#: comment lines on an idle stream, so proxies and phones keep it open
HEARTBEAT_SECONDS = 20


def _status_event(status: str, version: int) -> str:
    return f'event: status\ndata: {{"status": "{status}", "status_version": {version}}}\n\n'


@api_bp.post("/api/v1/residents/<sid>/links")
@require("authority")
def create_link(sid):
    """A one-time sign-in link for a resident, handed out by an authority (SMS, paper)."""
    if not is_subject_id(sid):
        raise NotFound("no such resident")
    get_store().resident(sid)  # 404 for an unknown resident
    token, expires = sessions.get_sessions().create_link(sid)
    get_store().audit("link_create", actor=actor(), subject=sid)
    return created({"url": url_for("pages.link", token=token),
                    "expires_at": format_time(expires)})
