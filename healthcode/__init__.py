"""healthcode: signed, dynamic QR health codes and their conversion between regional schemes."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

__version__ = "0.1.0"


def create_app(test_config: dict | None = None) -> Flask:
    """Build the WSGI app: configuration, resources (``init_app``), blueprints, error handlers.

    Importing the package builds nothing; everything happens here.
    """
    from . import (assets, auth, bootstrap, config, i18n, page_texts, recognition, sessions,
                   status_push, store)
    from .views import register_blueprints

    app = Flask(__name__)
    app.config.from_mapping(config.load_env())
    if test_config:
        app.config.from_mapping(test_config)
    config.validate(app.config)
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY"]
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    bootstrap.init_app(app)
    store.init_app(app)
    auth.init_app(app)
    sessions.init_app(app)
    i18n.init_app(app)
    recognition.init_app(app)
    page_texts.init_app(app)
    status_push.init_app(app)
    assets.init_app(app)
    register_blueprints(app)
    _register_error_handlers(app)
    _register_hooks(app)
    return app


def _register_error_handlers(app: Flask) -> None:
    from .errors import HealthCodeError, StoreUnavailable

    @app.errorhandler(HealthCodeError)
    def handle_error(error: HealthCodeError):
        response = jsonify(error.to_dict())
        response.status_code = error.status
        if isinstance(error, StoreUnavailable):
            response.headers["Retry-After"] = str(app.config["RETRY_AFTER"])
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="healthcode"'
        return response

    @app.errorhandler(HTTPException)
    def handle_http(error: HTTPException):
        reason = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                  400: "bad_request"}.get(error.code, "http_error")
        response = jsonify({"error": reason, "message": error.description})
        response.status_code = error.code
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        # Logged with its traceback for operators; the client learns nothing internal.
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        response = jsonify({"error": "internal_error", "message": "internal error"})
        response.status_code = 500
        return response


def _register_hooks(app: Flask) -> None:
    from . import metrics

    @app.after_request
    def headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        metrics.count_request(request.url_rule.rule if request.url_rule else "unmatched",
                              response.status_code)
        return response


logging.getLogger(__name__).addHandler(logging.NullHandler())
