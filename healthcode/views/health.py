"""Liveness, readiness and metrics for operators."""
from flask import Blueprint, Response, current_app, jsonify

from .. import metrics, openapi, recognition, redis_topology
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
    """Ready to take traffic: Redis answers and a signing key is loaded.

    It also says which Redis topology answered and whether all of it serves (``redis``:
    ``topology``, ``complete``, and for a cluster its state and slot counts), and which kids
    this host signs and verifies with (``keys``), so a load balancer or an operator comparing
    hosts spots one that lags behind a key rotation, and whether an earlier release's data is
    still waiting for ``healthcode store migrate`` (``store.old_release_data``). A cluster missing a primary for some slots
    stays ready: every host sees the same cluster, and taking them all out would stop the
    verifies that still work from the token alone.
    """
    checks = {}
    store = get_store()
    try:
        topology = store.topology()
        checks["redis"] = True
    except StoreUnavailable:
        topology = {"topology": redis_topology.kind_of(store.r), "complete": False}
        checks["redis"] = False
    ring = get_ring()
    checks["signing_key"] = ring.has_active()
    active = ring.active.kid if checks["signing_key"] else None
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks, "redis": topology,
            "keys": {"active": active,
                     "verifying": [k.kid for k in ring.keys() if not k.retired]}}
    # Stale trust is reported, not a reason to take the worker out of rotation: that would
    # stop every verification, as an expired signed trust list once did in a whole country.
    trust = recognition.get_trust()
    body["trust"] = {"stale_sources": [s.to_dict() for s in trust.stale_sources()]}
    body["warnings"] = trust.warnings()
    # An earlier release's data is reported, not a reason to go out of rotation either: the
    # status keys kept their format, so verifies still work (one EXISTS, only here).
    try:
        old = store.has_legacy_audit() if checks["redis"] else None
    except StoreUnavailable:
        old = None
    body["store"] = {"old_release_data": old}
    if old:
        body["warnings"].append({
            "code": "store_migration_needed",
            "message": "the store holds an earlier release's data (its audit stream hc:audit); "
                       "run `healthcode store migrate` (README, Upgrading)"})
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    return response


@bp.get("/metrics")
def metrics_view():
    """The whole service's counters (every worker's, in multiprocess mode); README "Metrics"."""
    return Response(metrics.exposition(current_app.config["METRICS_DIR"]),
                    content_type=metrics.CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi_json():
    """The API description partners integrate against."""
    return jsonify(openapi.spec(current_app.config,
                                modes=current_app.extensions.get("healthcode.modes") or ()))
