"""Mutual recognition endpoints: conversion, the schemes we read and write, and our trust list."""
from __future__ import annotations

import base64

from flask import Blueprint, Response, current_app, jsonify, request

from .. import conversion, metrics, qr, recognition, verification
from ..auth import actor, require
from ..errors import CodeError, InvalidField
from ..http import field, json_body
from ..residents import get_ring
from ..trust.bundle import MEDIA_TYPE

bp = Blueprint("partners", __name__, url_prefix="/api/v1")


@bp.post("/convert")
@require("partner", "authority")
def convert():
    data = json_body()
    unknown = set(data) - {"code", "to", "from", "document", "format"}
    if unknown:
        raise InvalidField(sorted(unknown)[0], "unknown field")
    text = field(data, "code", str).strip()
    verification.check_length(text)
    to = field(data, "to", str)
    source = field(data, "from", str, required=False)
    document = field(data, "document", dict, required=False)
    fmt = field(data, "format", str, required=False)
    if fmt is not None and fmt not in qr.FORMATS:
        raise InvalidField("format", "png or svg")
    try:
        result = conversion.convert(text, to, source=source, actor=actor(), document=document)
    except CodeError as error:
        metrics.count_verification(f"convert:{to}", error.reason)
        raise
    metrics.count_verification(f"convert:{to}", "converted")
    body = result.to_dict()
    if fmt:
        # each scheme's own QR rules: an EU DCC is alphanumeric at error correction Q
        level = getattr(recognition.get_registry().get(to), "qr_error_correction", "M")
        body["qr"] = {"format": fmt, "media_type": qr.FORMATS[fmt], "error_correction": level,
                      "data": base64.b64encode(qr.render(result.code, fmt, level)).decode()}
    return jsonify(body)


@bp.get("/schemes")
def schemes():
    """The schemes this service reads (verify, convert from) and writes (convert to)."""
    registry = recognition.get_registry()
    policies = recognition.get_policies()
    signers = recognition.get_signers()
    out = []
    for adapter in registry.adapters():
        entry = {"scheme": adapter.scheme, "decode": True,
                 "encode": bool(adapter.can_encode and (
                     adapter.signs_with_ring or adapter.scheme in signers)),
                 "agreement": adapter.scheme in policies or adapter.scheme == "native"}
        for attr in ("name", "region"):  # partner adapters say who they are
            value = getattr(adapter, attr, None)
            if isinstance(value, str):
                entry[attr] = value
        out.append(entry)
    return jsonify({"schemes": out})


@bp.get("/trust")
def trust():
    """Our public keys and the partner keys we recognise, for offline scanners and partners."""
    issuer = current_app.config["ISSUER"]
    partners = recognition.get_trust().to_dict()
    # our keys come live from the ring (a rotation shows at once), not from start-up trust
    partners["jwks"] = [entry for entry in partners["jwks"] if entry["issuer"] != issuer]
    return jsonify({"own": {"issuer": issuer, "scheme": "native", **get_ring().jwks()},
                    **partners})


@bp.get("/trust/bundle")
def trust_bundle():
    """The signed trust bundle for offline scanners (public; see healthcode.trust.bundle)."""
    bundle = recognition.get_bundle()
    tag = bundle.etag[3:-1]  # W/"..." -> ...
    if request.if_none_match.contains_weak(tag):
        response = Response(status=304)
    elif "gzip" in request.accept_encodings:
        response = Response(bundle.gzipped, mimetype=MEDIA_TYPE)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(bundle.token, mimetype=MEDIA_TYPE)
    response.vary.add("Accept-Encoding")
    response.set_etag(tag, weak=True)
    # scanners poll; a shared cache may keep it briefly, never past the bundle's own life
    response.headers["Cache-Control"] = "public, max-age=60, must-revalidate"
    response.headers["Expires"] = bundle.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
    return response
