"""The JSON API under ``/api/v1`` (paths are a DESIGN.md contract)."""
from __future__ import annotations

import base64

from flask import Blueprint, Response, current_app, jsonify, request

from .. import bulk, metrics, qr, residents, revocation, verification
from ..auth import actor, current_credential, require, require_subject_access
from ..errors import InvalidField, NotFound
from ..http import created, field, json_body
from ..idempotency import idempotent
from ..record import STATUS_REASONS
from ..rules.service import get_modes, request_language, resolve_mode
from ..store import get_store
from ..subject import is_subject_id

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _subject(sid: str) -> str:
    # An id that cannot be one of ours is a 404 without a store round trip.
    if not is_subject_id(sid):
        raise NotFound("no such resident")
    return sid


def _enrolled(view: dict):
    return created(view, location=f"/api/v1/residents/{view['id']}")


@bp.post("/residents")
@require("authority")
@idempotent(respond=_enrolled)
def enroll():
    return _enrolled(residents.enroll(json_body(), actor()))


@bp.post("/residents/batch")
@require("authority")
def enroll_batch():
    """Up to bulk.MAX_BATCH enrollments at once; a result per item, in order."""
    data = json_body(limit=bulk.MAX_BATCH_BODY)
    unknown = set(data) - {"residents"}
    if unknown:
        raise InvalidField(sorted(unknown)[0], "unknown field")
    items = data.get("residents")
    if not isinstance(items, list) or not 1 <= len(items) <= bulk.MAX_BATCH:
        raise InvalidField("residents", f"a list of 1 to {bulk.MAX_BATCH} enrollment bodies")
    results = bulk.enroll_batch(get_store(), items, actor(), residents.get_secret())
    return jsonify({**bulk.tally(results), "results": results})


@bp.get("/residents/<sid>")
def show(sid):
    require_subject_access(_subject(sid))
    return jsonify(residents.show(sid))


@bp.put("/residents/<sid>/status")
@require("authority")
@idempotent(respond=jsonify)
def change_status(sid):
    return jsonify(residents.change_status(_subject(sid), json_body(), actor()))


@bp.get("/residents/<sid>/history")
@require("authority")
def history(sid):
    """Every status change: who, when, from, to, why."""
    store = get_store()
    store.resident(_subject(sid))  # 404 for an unknown resident
    return jsonify({"id": sid, "changes": store.history(sid)})


@bp.get("/residents/<sid>/code")
def code(sid):
    require_subject_access(_subject(sid))
    fmt = request.args.get("format", "json")
    if fmt not in ("json", *qr.FORMATS):
        raise InvalidField("format", "one of json, png, svg")
    issued = residents.current_code(sid)
    if fmt == "json":
        response = jsonify(issued.to_dict())
    else:
        seconds = current_app.config["CODE_TTL"]
        response = Response(residents.image(issued.token, fmt, seconds),
                            mimetype=qr.FORMATS[fmt])
        response.headers["X-Code-Expires-At"] = issued.to_dict()["expires_at"]
    # A code is personal and short-lived: no shared cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/codes")
@require("authority")
def issue():
    data = json_body()
    fmt = field(data, "format", str, required=False)
    if fmt is not None and fmt not in qr.FORMATS:
        raise InvalidField("format", "png or svg")
    issued = residents.one_shot(data)
    body = issued.to_dict()
    if fmt:
        body["qr"] = {"format": fmt, "media_type": qr.FORMATS[fmt],
                      "data": base64.b64encode(qr.render(issued.token, fmt)).decode()}
    return created(body)


@bp.post("/codes/revoke")
@require("authority")
def revoke():
    """Withdraw a one-shot code: it verifies as revoked and the trust bundle lists it."""
    return jsonify(revocation.revoke(json_body().get("code"), actor()))


@bp.post("/verify")
@require("checkpoint", "authority")
def verify():
    data = json_body()
    text = field(data, "code", str)
    verification.check_length(text)
    # a checkpoint mode: named here, or bound to the credential (rules/service.py decides)
    mode = resolve_mode(data.get("mode"), current_credential())
    answer = verification.verify_any(text.strip(), mode=mode,
                                     lang=request_language(data) if mode else None)
    metrics.count_verification(answer["scheme"] or "unknown",
                               "valid" if answer["valid"] else answer["reason"])
    return jsonify(answer)


@bp.get("/reasons")
def reasons():
    """The status reasons an authority may give (yellow and red need one)."""
    return jsonify({"reasons": [{"code": k, "description": v}
                                for k, v in STATUS_REASONS.items()]})


@bp.get("/whoami")
def whoami():
    credential = current_credential()
    body = {"id": credential.id, "role": credential.role, "subject": credential.subject}
    if getattr(credential, "mode", None):
        body["mode"] = credential.mode
    return jsonify(body)


@bp.get("/modes")
@require("checkpoint", "authority")
def modes():
    """The installed checkpoint modes (a scanner shows the active one)."""
    lang = request_language()
    return jsonify({"modes": [m.to_dict(lang) for m in get_modes().values()]})
