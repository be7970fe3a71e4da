"""Transport facts: which forwarded headers to believe, and HSTS over TLS.

``request.is_secure`` is true when this process terminates TLS (gunicorn ``--certfile``) or,
only when ``HEALTHCODE_TRUSTED_PROXIES`` is N > 0, when the N-th proxy from us says so in
``X-Forwarded-Proto`` (werkzeug's ProxyFix, which also takes the client address and host from
those N hops). With 0, the default, no forwarded header is believed: anyone could send one.
gunicorn's own ``secure_scheme_headers`` are switched off in :mod:`healthcode.gunicorn_conf` so
that this is the one place that decides.

Over TLS every response carries ``Strict-Transport-Security``: a browser that has seen it once
never again tries plain HTTP for this host (a year; without ``includeSubDomains``, which would
bind hosts this service does not own).
"""
from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

HSTS = "max-age=31536000"


def init_app(app: Flask) -> None:
    hops = int(app.config["TRUSTED_PROXIES"])
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops,
                                x_port=hops)

    @app.after_request
    def strict_transport(response):
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
