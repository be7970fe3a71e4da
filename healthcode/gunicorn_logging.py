"""Gunicorn's access log, minus secrets that travel in URL paths; its error log in JSON when
``HEALTHCODE_LOG_FORMAT=json``.

A one-time sign-in link (``/me/login/<token>``) carries its token in the path, where gunicorn
would log it. The token is single-use and short-lived, but a log is kept far longer and read by
more people than the link: it is replaced by ``[redacted]`` before the line is written.

In JSON mode gunicorn's own lines (workers booting, signals) use the application's formatter
(:class:`healthcode.logs.JSONFormatter`), so every line on stderr is one JSON object.
"""
from __future__ import annotations

import re

from gunicorn.glogging import Logger

_SECRET_PATHS = re.compile(r"(/me/login/)[^/?\s\"]+")


def redact(text: str) -> str:
    return _SECRET_PATHS.sub(r"\1[redacted]", text)


class RedactingLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        from . import config

        if config.load_env()["LOG_FORMAT"] == "json":
            from .logs import JSONFormatter

            for handler in self.error_log.handlers:
                handler.setFormatter(JSONFormatter())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "{raw_uri}e"):
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = redact(value)
        return atoms
