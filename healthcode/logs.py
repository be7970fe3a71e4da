"""Logging: a real handler for the package logger, a request id on every request and log line,
and, as an option, one JSON line per request.

Why a handler here. The package used to give its logger a ``NullHandler``; Flask then adds none
of its own (it counts any handler), so ``app.logger.exception`` reached nobody and twenty 500s
left no trace. :func:`init_app` gives the ``healthcode`` logger one stream handler on stderr,
which is gunicorn's error log under ``healthcode serve`` and the terminal under ``flask run``.

The request id is the client's ``X-Request-ID`` when it is a short token of safe characters
(a proxy's or a partner's id is worth keeping for correlation), else a fresh random one. It is
returned in the ``X-Request-ID`` response header, carried by every log record made during the
request, and printed in a 500's body so a caller can quote it.

Nothing personal and no secret goes into a line: the request line names the route pattern
(``/api/v1/residents/<sid>``, ``/me/login/<token>``), never the path or the query string.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time

from flask import Flask, g, has_request_context, request

HEADER = "X-Request-ID"
ENVIRON_KEY = "healthcode.request_id"
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

logger = logging.getLogger("healthcode")
access_logger = logging.getLogger("healthcode.access")


def request_id(environ: dict) -> str:
    """The id of the request ``environ`` describes; decided once, kept in the environ."""
    rid = environ.get(ENVIRON_KEY)
    if rid is None:
        offered = environ.get("HTTP_X_REQUEST_ID", "")
        rid = offered if _SANE.fullmatch(offered) else secrets.token_hex(16)
        environ[ENVIRON_KEY] = rid
    return rid


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's id ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = (request_id(request.environ) if has_request_context()
                                 else "-")
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line; a traceback stays inside its record's line."""

    FIELDS = ("request_id", "method", "route", "status", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname.lower(), "logger": record.name,
                "pid": record.process, "message": record.getMessage()}
        for name in self.FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


TEXT_FORMAT = ("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s "
               "[request %(request_id)s]")


def make_handler(fmt: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else
                         logging.Formatter(TEXT_FORMAT, "%Y-%m-%d %H:%M:%S %z"))
    handler._healthcode = True
    return handler


def configure(fmt: str, level: str) -> None:
    """The package logger's one handler, replaced when an app is built with other settings."""
    from flask.logging import default_handler

    for old in list(logger.handlers):
        if getattr(old, "_healthcode", False) or old is default_handler or \
                isinstance(old, logging.NullHandler):
            logger.removeHandler(old)
    logger.addHandler(make_handler(fmt))
    logger.setLevel(level.upper())


def init_app(app: Flask) -> None:
    configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    json_lines = app.config["LOG_FORMAT"] == "json"

    @app.before_request
    def start():
        g.request_started = time.perf_counter()
        request_id(request.environ)

    @app.after_request
    def finish(response):
        response.headers[HEADER] = request_id(request.environ)
        if json_lines:
            started = g.get("request_started")
            access_logger.info("request", extra={
                "method": request.method,
                "route": request.url_rule.rule if request.url_rule else None,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)
                if started is not None else None})
        return response
