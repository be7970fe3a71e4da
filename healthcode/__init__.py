"""healthcode: signed, dynamic QR health codes and their conversion between regional schemes."""
from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

__version__ = "0.1.0"


def create_app(test_config: dict | None = None) -> Flask:
    """Build the WSGI app: configuration, resources (``init_app``), blueprints, error handlers.

    Importing the package builds nothing; everything happens here.
    """
    from . import (admission, assets, auth, bootstrap, config, i18n, jsontext, logs, page_texts,
                   proxies, recognition, sessions, status_push, store)
    from .rules import service as rules_service
    from .views import register_blueprints

    app = Flask(__name__)
    app.json = jsontext.JSONProvider(app)  # answers' kept JSON texts spliced in (jsontext.py)
    app.config.from_mapping(config.load_env())
    if test_config:
        app.config.from_mapping(test_config)
    config.validate(app.config)
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY"]
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    logs.init_app(app)
    bootstrap.init_app(app)
    store.init_app(app)
    auth.init_app(app)
    sessions.init_app(app)
    i18n.init_app(app)
    recognition.init_app(app)
    rules_service.init_app(app)
    page_texts.init_app(app)
    status_push.init_app(app)
    assets.init_app(app)
    register_blueprints(app)
    _register_error_handlers(app)
    _register_hooks(app)
    proxies.init_app(app)
    admission.init_app(app)
    return app


def _register_error_handlers(app: Flask) -> None:
    from . import logs
    from .errors import HealthCodeError, RateLimited, StoreUnavailable

    @app.errorhandler(HealthCodeError)
    def handle_error(error: HealthCodeError):
        response = jsonify(error.to_dict())
        response.status_code = error.status
        if isinstance(error, StoreUnavailable):
            response.headers["Retry-After"] = str(app.config["RETRY_AFTER"])
        if isinstance(error, RateLimited) and "retry_after" in error.detail:
            response.headers["Retry-After"] = str(error.detail["retry_after"])
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="healthcode"'
        return response

    @app.errorhandler(HTTPException)
    def handle_http(error: HTTPException):
        reason = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                  400: "bad_request"}.get(error.code, "http_error")
        response = jsonify({"error": reason, "message": error.description})
        response.status_code = error.code
        # e.g. Allow on a 405 (RFC 9110 15.5.6); the body is ours, so not its Content-Type
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        # Logged once, with its traceback and the request id, for operators; the client learns
        # nothing internal but the id to quote. The route, not the path: a path may hold a
        # one-time token.
        route = request.url_rule.rule if request.url_rule else "unmatched"
        app.logger.exception("unhandled error on %s %s", request.method, route)
        response = jsonify({"error": "internal_error", "message": "internal error",
                            "request_id": logs.request_id(request.environ)})
        response.status_code = 500
        return response


def _register_hooks(app: Flask) -> None:
    import time

    from flask import g

    from . import metrics

    @app.after_request
    def headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        started = g.get("request_started")
        metrics.count_request(request.url_rule.rule if request.url_rule else "unmatched",
                              response.status_code,
                              time.perf_counter() - started if started is not None else None)
        return response
