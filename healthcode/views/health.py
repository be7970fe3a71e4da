"""Liveness, readiness and metrics for operators."""
from flask import Blueprint, Response, jsonify

from .. import metrics, openapi, recognition
from ..errors import StoreUnavailable
from ..residents import get_ring
from ..store import get_store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up and serving; says nothing about its dependencies."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready to take traffic: Redis answers and a signing key is loaded."""
    checks = {}
    try:
        checks["redis"] = get_store().ping()
    except StoreUnavailable:
        checks["redis"] = False
    checks["signing_key"] = get_ring().has_active()
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    # Stale trust is reported, not a reason to take the worker out of rotation: that would
    # stop every verification, as an expired signed trust list once did in a whole country.
    trust = recognition.get_trust()
    body["trust"] = {"stale_sources": [s.to_dict() for s in trust.stale_sources()]}
    body["warnings"] = trust.warnings()
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def metrics_view():
    return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4")


@bp.get("/openapi.json")
def openapi_json():
    """The API description partners integrate against."""
    return jsonify(openapi.spec())
