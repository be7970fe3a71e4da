"""Gunicorn's access log, minus secrets that travel in URL paths.

A one-time sign-in link (``/me/login/<token>``) carries its token in the path, where gunicorn
would log it. The token is single-use and short-lived, but a log is kept far longer and read by
more people than the link: it is replaced by ``[redacted]`` before the line is written.
"""
from __future__ import annotations

import re

from gunicorn.glogging import Logger

_SECRET_PATHS = re.compile(r"(/me/login/)[^/?\s\"]+")


def redact(text: str) -> str:
    return _SECRET_PATHS.sub(r"\1[redacted]", text)


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "{raw_uri}e"):
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = redact(value)
        return atoms
