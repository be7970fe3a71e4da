"""The OpenAPI 3.1 description of the JSON API, served at ``/openapi.json``.

Written out by hand rather than generated, because partners integrate against it: each path
says who may call it, what it takes and every error reason it can answer with. A test checks
that every API route of the app is described here and that the document is valid OpenAPI.
"""
from __future__ import annotations

from . import __version__
from .errors import CODE_REASONS
from .record import STATUS_REASONS, STATUSES


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _errors(*codes: int) -> dict:
    text = {400: "bad request (not_json, invalid_field)", 401: "no or unknown credential",
            403: "the credential's role may not do this", 404: "no such resident",
            409: "already enrolled", 413: "body or code over the size cap (too_large)",
            422: "the code cannot be converted (a code reason)",
            429: "rate limited (rate_limited)",
            503: "the state store is unavailable (store_unavailable, with Retry-After), or a "
                 "target scheme's signer is (signer_unavailable)"}
    return {str(code): _error(text[code]) for code in codes}


def _op(summary: str, roles: list[str] | None, responses: dict, body: dict | None = None,
        parameters: list | None = None, description: str | None = None) -> dict:
    op = {"summary": summary, "responses": responses}
    if description:
        op["description"] = description
    if roles:
        op["security"] = [{"bearer": []}]
        op["x-roles"] = roles
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": body}}}
    if parameters:
        op["parameters"] = parameters
    return op


SUBJECT_ID = {"name": "id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"},
              "description": "subject id: a keyed hash of the identity document"}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string", "description": "stable machine-readable reason"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the offending field (invalid_field)"},
        "rule": {"type": "string", "description": "the policy rule that refused"}}},
    "Document": {"type": "object", "required": ["type", "number", "region"], "properties": {
        "type": {"type": "string", "examples": ["travel_permit", "passport", "id_card"]},
        "number": {"type": "string"}, "region": {"type": "string", "examples": ["MO"]}}},
    "Evidence": {"type": "object", "properties": {
        "tests": {"type": "array", "items": {"type": "object",
                                             "required": ["type", "result", "sampled_at"]}},
        "vaccinations": {"type": "array", "items": {
            "type": "object", "required": ["product", "dose_number", "administered_on"]}},
        "recoveries": {"type": "array", "items": {"type": "object",
                                                  "required": ["first_positive_on"]}}}},
    "Status": {"type": "string", "enum": list(STATUSES)},
    "StatusReason": {"type": "string", "enum": list(STATUS_REASONS)},
    "Enrollment": {"type": "object", "required": ["name", "document", "status"],
                   "additionalProperties": False, "properties": {
        "name": {"type": "string"}, "family_name": {"type": "string"},
        "given_name": {"type": "string"}, "name_latin": {"type": "string"},
        "birth_date": {"type": "string", "description": "YYYY, YYYY-MM or YYYY-MM-DD"},
        "document": _ref("Document"), "status": _ref("Status"),
        "reason": _ref("StatusReason"),
        "reasons": {"type": "array", "items": _ref("StatusReason")},
        "evidence": _ref("Evidence")}},
    "Resident": {"type": "object", "required": ["id", "status", "status_version"],
                 "properties": {"id": {"type": "string"}, "status": _ref("Status"),
                                "status_version": {"type": "integer"},
                                "masked_name": {"type": "string"},
                                "reasons": {"type": "array", "items": {"type": "string"}},
                                "record": {"type": "object"}}},
    "StatusChange": {"type": "object", "required": ["status"], "additionalProperties": False,
                     "properties": {"status": _ref("Status"), "reason": _ref("StatusReason"),
                                    "reasons": {"type": "array", "items": _ref("StatusReason")},
                                    "note": {"type": "string", "maxLength": 500}}},
    "Code": {"type": "object", "required": ["code", "expires_at"], "properties": {
        "code": {"type": "string", "description": "the text inside the QR code"},
        "scheme": {"type": "string"}, "status": _ref("Status"),
        "status_version": {"type": "integer"}, "masked_name": {"type": "string"},
        "issued_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "kid": {"type": "string"}, "qr_version": {"type": "integer"},
        "qr": {"type": "object", "description": "base64 image, when a format was asked for"}}},
    "Verification": {"type": "object",
                     "required": ["valid", "reason", "scheme", "status", "checked_online"],
                     "properties": {
        "valid": {"type": "boolean"},
        "reason": {"oneOf": [{"type": "null"}, {"type": "string",
                                                "enum": sorted(CODE_REASONS)}]},
        "message": {"type": "string"},
        "scheme": {"type": ["string", "null"]},
        "status": {"oneOf": [{"type": "null"}, _ref("Status")]},
        "subject": {"type": ["object", "null"], "properties": {
            "masked_name": {"type": ["string", "null"]}}},
        "expires_at": {"type": ["string", "null"]},
        "checked_online": {"type": "boolean"},
        "warnings": _ref("Warnings")}},
    "Conversion": {"type": "object", "required": ["code", "scheme", "record", "trace"],
                   "properties": {
        "code": {"type": "string"}, "scheme": {"type": "string"},
        "source_scheme": {"type": "string"},
        "record": {"type": "object", "description": "the canonical record, masked"},
        "trace": {"type": "array", "items": {"type": "string"},
                  "description": "the mapping and policy rules that fired"},
        "expires_at": {"type": ["string", "null"]},
        "warnings": _ref("Warnings")}},
    "Warnings": {"type": "array", "description": "deviations of a genuine code from the letter "
                                                 "of its scheme (never about authenticity)",
                 "items": {"type": "object", "required": ["code", "message"], "properties": {
                     "code": {"type": "string"}, "message": {"type": "string"}}}},
}


def spec() -> dict:
    code_body = {"type": "object", "required": ["code"],
                 "properties": {"code": {"type": "string"}}}
    paths = {
        "/api/v1/residents": {"post": _op(
            "Enroll a resident", ["authority"],
            {"201": _json(_ref("Resident"), "enrolled, at status version 1"),
             **_errors(400, 401, 403, 409, 413, 503)}, body=_ref("Enrollment"),
            description="Yellow and red need a reason from GET /api/v1/reasons.")},
        "/api/v1/residents/{id}": {"get": _op(
            "Read a resident", ["authority", "resident (own subject)"],
            {"200": _json(_ref("Resident"), "the resident"), **_errors(401, 403, 404, 503)},
            parameters=[SUBJECT_ID])},
        "/api/v1/residents/{id}/status": {"put": _op(
            "Change a status (versioned and recorded)", ["authority"],
            {"200": _json({"type": "object"}, "the new status and version"),
             **_errors(400, 401, 403, 404, 503)}, body=_ref("StatusChange"),
            parameters=[SUBJECT_ID])},
        "/api/v1/residents/{id}/history": {"get": _op(
            "Every status change of a resident", ["authority"],
            {"200": _json({"type": "object"}, "changes, oldest first"),
             **_errors(401, 403, 404, 503)}, parameters=[SUBJECT_ID])},
        "/api/v1/residents/{id}/code": {"get": _op(
            "The resident's current dynamic code", ["authority", "resident (own subject)"],
            {"200": {"description": "the code as JSON, or its QR image", "content": {
                "application/json": {"schema": _ref("Code")},
                "image/png": {}, "image/svg+xml": {}}},
             **_errors(400, 401, 403, 404, 503)},
            parameters=[SUBJECT_ID, {"name": "format", "in": "query", "schema": {
                "type": "string", "enum": ["json", "png", "svg"], "default": "json"}}])},
        "/api/v1/codes": {"post": _op(
            "Issue a one-shot code without enrolling anyone", ["authority"],
            {"201": _json(_ref("Code"), "the signed code"), **_errors(400, 401, 403, 413)},
            body={"type": "object", "required": ["name", "status"], "properties": {
                "name": {"type": "string"}, "document": _ref("Document"),
                "status": _ref("Status"), "reason": _ref("StatusReason"),
                "ttl": {"type": "integer", "minimum": 10},
                "format": {"type": "string", "enum": ["png", "svg"]}}})},
        "/api/v1/verify": {"post": _op(
            "Verify a scanned code of any supported scheme", ["checkpoint", "authority"],
            {"200": _json(_ref("Verification"),
                          "the scan worked; valid says whether the code did"),
             **_errors(400, 401, 403, 413)}, body=code_body)},
        "/api/v1/convert": {"post": _op(
            "Convert a code into another scheme", ["partner", "authority"],
            {"200": _json(_ref("Conversion"), "the converted code"),
             **_errors(400, 401, 403, 413, 422, 503)},
            body={"type": "object", "required": ["code", "to"], "properties": {
                "code": {"type": "string"}, "to": {"type": "string"},
                "from": {"type": "string", "description": "source scheme (default: detected)"},
                "document": _ref("Document"),
                "format": {"type": "string", "enum": ["png", "svg"],
                           "description": "also render the QR, by the target scheme's rules"}}})},
        "/api/v1/lookup": {"post": _op(
            "Look a resident up by identity document (no phone)", ["checkpoint"],
            {"200": _json({"type": "object", "required": ["found", "status", "masked_name"],
                           "properties": {"found": {"type": "boolean"},
                                          "status": {"oneOf": [{"type": "null"},
                                                               _ref("Status")]},
                                          "masked_name": {"type": ["string", "null"]}}},
                          "colour and masked name only; every lookup is audited"),
             **_errors(400, 401, 403, 429, 503)},
            body={"type": "object", "required": ["document"],
                  "properties": {"document": _ref("Document")}},
            description="Rate-limited per credential (HEALTHCODE_LOOKUP_RATE a minute).")},
        "/api/v1/residents/{id}/links": {"post": _op(
            "A one-time sign-in link for a resident's code page", ["authority"],
            {"200": _json({"type": "object", "properties": {
                "url": {"type": "string"}, "expires_at": {"type": "string"}}},
                "single use, short-lived"), "201": _json({"type": "object"}, "created"),
             **_errors(401, 403, 404, 503)}, parameters=[SUBJECT_ID])},
        "/api/v1/schemes": {"get": _op("The schemes read and written", None, {
            "200": _json({"type": "object"}, "schemes")})},
        "/api/v1/trust": {"get": _op("Our public keys and the partner keys we recognise", None,
                                     {"200": _json({"type": "object"}, "trust list")})},
        "/api/v1/reasons": {"get": _op("The status reasons an authority may give", None, {
            "200": _json({"type": "object"}, "reasons")})},
        "/api/v1/whoami": {"get": _op("The calling credential", ["any"], {
            "200": _json({"type": "object"}, "id, role, subject"), **_errors(401)})},
        "/.well-known/jwks.json": {"get": _op("Our public signing keys (JWK set)", None, {
            "200": _json({"type": "object"}, "JWK set")})},
        "/healthz": {"get": _op("The process is up", None, {
            "200": _json({"type": "object"}, "ok")})},
        "/readyz": {"get": _op("Redis reachable and a signing key loaded", None, {
            "200": _json({"type": "object"}, "ready"),
            "503": _json({"type": "object"}, "not ready")})},
        "/metrics": {"get": _op("Prometheus metrics of the answering worker", None, {
            "200": {"description": "text exposition format",
                    "content": {"text/plain": {}}}})},
        "/openapi.json": {"get": _op("This document", None, {
            "200": _json({"type": "object"}, "OpenAPI 3.1")})},
    }
    return {"openapi": "3.1.0",
            "info": {"title": "healthcode", "version": __version__,
                     "description": "Signed, dynamic QR health codes and their conversion "
                                    "between regional schemes. Bearer credentials per role "
                                    "(x-roles on each operation) are created with "
                                    "`healthcode tokens create --role ROLE`."},
            "paths": paths,
            "components": {"schemas": SCHEMAS, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"}}}}
