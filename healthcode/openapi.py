"""The OpenAPI 3.1 description of the JSON API, served at ``/openapi.json``.

Written out by hand rather than generated, because partners integrate against it: each path
says who may call it, what it takes and every error reason it can answer with. A test checks
that every API route of the app is described here and that the document is valid OpenAPI.
"""
from __future__ import annotations

from . import __version__
from .errors import CODE_REASONS
from .record import STATUS_REASONS, STATUSES, TEST_RESULTS, TEST_TYPES
from .tokens import MAX_ONE_SHOT_TTL


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _errors(*codes: int) -> dict:
    text = {400: "bad request (not_json, too_deep, invalid_field)",
            401: "no or unknown credential",
            403: "the credential's role may not do this", 404: "no such resident",
            409: "already enrolled", 413: "body or code over the size cap (too_large)",
            422: "the code cannot be converted (a code reason)",
            429: "rate limited (rate_limited, with Retry-After): too many look-ups, or too many "
                 "failed authentications from this address or for this credential",
            503: "the state store is unavailable (store_unavailable, with Retry-After), or a "
                 "target scheme's signer is (signer_unavailable), or a record is still in an "
                 "earlier release's format (store_migration_needed)"}
    return {str(code): _error(text[code]) for code in codes}


def _op(summary: str, roles: list[str] | None, responses: dict, body: dict | None = None,
        parameters: list | None = None, description: str | None = None) -> dict:
    op = {"summary": summary, "responses": responses}
    if description:
        op["description"] = description
    if roles:
        op["security"] = [{"bearer": []}]
        op["x-roles"] = roles
        # every authenticated call may meet the guessing throttle (healthcode.throttle) and,
        # while Redis is down past the outage bound, store_unavailable
        for code in (401, 429, 503):
            responses.setdefault(str(code), _errors(code)[str(code)])
    if body:
        for code in (400, 413):  # not JSON, too deep, a bad field; over the body size cap
            responses.setdefault(str(code), _errors(code)[str(code)])
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": body}}}
    if parameters:
        op["parameters"] = parameters
    return op


SUBJECT_ID = {"name": "id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"},
              "description": "subject id: a keyed hash of the identity document"}

def _text(max_length: int = 200, required: bool = False) -> dict:
    """A string field as the parsers read it: at most ``max_length`` characters; a required one
    must hold something other than spaces (it is stripped)."""
    schema = {"type": "string", "maxLength": max_length}
    if required:
        schema.update(minLength=1, pattern="\\S")
    return schema


#: YYYY, YYYY-MM or YYYY-MM-DD (schemes allow partial birth dates)
PARTIAL_DATE = {"anyOf": [{"type": "string", "pattern": "^[0-9]{4}(-(0[1-9]|1[0-2]))?$"},
                          {"type": "string", "format": "date",
                           "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}]}
#: an RFC 3339 time as the parsers read it (Python's ISO 8601 reader): no leap seconds, at most
#: microseconds
DATE_TIME = {"type": "string", "format": "date-time",
             "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9]"
                        "(\\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"}
COUNT = {"type": "integer", "minimum": 0, "maximum": 2**53}

TEST = {"type": "object", "required": ["type", "result", "sampled_at"],
        "additionalProperties": False, "properties": {
            "type": {"type": "string", "enum": list(TEST_TYPES)},
            "result": {"type": "string", "enum": list(TEST_RESULTS)},
            "sampled_at": DATE_TIME, "disease": _text(), "name": _text(),
            "manufacturer": _text(), "centre": _text(), "country": _text(), "code": _text()}}
VACCINATION = {"type": "object", "required": ["product", "dose_number", "administered_on"],
               "additionalProperties": False, "properties": {
                   "product": _text(required=True), "dose_number": COUNT,
                   "administered_on": PARTIAL_DATE, "series_doses": COUNT, "disease": _text(),
                   "vaccine_type": _text(), "manufacturer": _text(), "lot": _text(),
                   "country": _text(), "code": _text()}}
RECOVERY = {"type": "object", "required": ["first_positive_on"], "additionalProperties": False,
            "properties": {"first_positive_on": PARTIAL_DATE, "valid_from": PARTIAL_DATE,
                           "valid_until": PARTIAL_DATE, "disease": _text(),
                           "country": _text()}}
#: yellow and red need a reason (residents.parse_status)
NEEDS_A_REASON = {"if": {"required": ["status"],
                         "properties": {"status": {"enum": ["yellow", "red"]}}},
                  "then": {"anyOf": [{"required": ["reason"]},
                                     {"required": ["reasons"],
                                      "properties": {"reasons": {"minItems": 1}}}]}}
#: the fields of an enrollment (residents.KNOWN_RESIDENT_FIELDS)
RESIDENT_FIELDS = {
    "name": _text(required=True), "family_name": _text(), "given_name": _text(),
    "name_latin": _text(), "birth_date": PARTIAL_DATE, "document": _ref("Document"),
    "status": _ref("Status"), "reason": _ref("StatusReason"),
    "reasons": {"type": "array", "items": _ref("StatusReason")},
    "evidence": _ref("Evidence")}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string", "description": "stable machine-readable reason"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the offending field (invalid_field)"},
        "rule": {"type": "string", "description": "the policy rule that refused"}}},
    "Document": {"type": "object", "required": ["type", "number", "region"],
                 "additionalProperties": False, "properties": {
        "type": {**_text(64, required=True), "examples": ["travel_permit", "passport"]},
        "number": _text(64, required=True),
        "region": {**_text(64, required=True), "examples": ["MO"]}}},
    "Evidence": {"type": "object", "additionalProperties": False, "properties": {
        "tests": {"type": "array", "maxItems": 50, "items": TEST},
        "vaccinations": {"type": "array", "maxItems": 50, "items": VACCINATION},
        "recoveries": {"type": "array", "maxItems": 50, "items": RECOVERY}}},
    "Status": {"type": "string", "enum": list(STATUSES)},
    "StatusReason": {"type": "string", "enum": list(STATUS_REASONS)},
    "Enrollment": {"type": "object", "required": ["name", "document", "status"],
                   "additionalProperties": False, "properties": RESIDENT_FIELDS,
                   **NEEDS_A_REASON},
    "Resident": {"type": "object", "required": ["id", "status", "status_version"],
                 "properties": {"id": {"type": "string"}, "status": _ref("Status"),
                                "status_version": {"type": "integer"},
                                "masked_name": {"type": "string"},
                                "reasons": {"type": "array", "items": {"type": "string"}},
                                "record": {"type": "object"}}},
    "StatusChange": {"type": "object", "required": ["status"], "additionalProperties": False,
                     "properties": {"status": _ref("Status"), "reason": _ref("StatusReason"),
                                    "reasons": {"type": "array", "items": _ref("StatusReason")},
                                    "note": {"type": "string", "maxLength": 500},
                                    "status_version": {
                                        "type": "integer", "minimum": 1,
                                        "description": "the version this change expects; "
                                                       "409 conflict when it moved on"}},
                     **NEEDS_A_REASON},
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
        "reasons": {"type": "array", "items": _ref("StatusReason"),
                    "description": "a yellow or red native code checked online: the reason "
                                   "codes on record (GET /api/v1/reasons)"},
        "mode": {"type": "string", "description": "the checkpoint mode applied"},
        "rules": {"type": "array", "items": _ref("RuleResult"),
                  "description": "with a mode: every rule applied; a failed one makes the "
                                 "answer valid: false, reason policy_refused"},
        "status_granted_by": {"type": "string",
                              "description": "mode:<name> when the mode gave the colour"},
        "warnings": _ref("Warnings"),
        "issuer": {"type": ["string", "null"],
                   "description": "who signed a foreign code (absent for our own)"}}},
    "RuleResult": {"type": "object", "required": ["id", "type", "result", "description"],
                   "properties": {
        "id": {"type": "string", "description": "the rule's Identifier (VR-AT-0001)"},
        "type": {"type": "string", "enum": ["Acceptance", "Invalidation"]},
        "result": {"type": "string", "enum": ["passed", "failed", "open"],
                   "description": "open: not decided (evaluation failed, or the code's scheme "
                                  "does not say what the rule reads); never counted as passed"},
        "description": {"type": "string",
                        "description": "in the request's language where the rule has it"},
        "version": {"type": "string"}, "country": {"type": "string"},
        "note": {"type": "string"}}},
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


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "IETF draft httpapi-idempotency-key-header: the same key (per credential) "
                   "within 24 hours returns the first answer and changes nothing"}


def _scale(paths: dict) -> None:
    """Idempotency-Key, expected status versions and the batch endpoint (issue 8)."""
    reused = {"409": _error("already enrolled, the status moved on from the expected "
                            "status_version (conflict), or a request with this "
                            "Idempotency-Key is still being processed "
                            "(idempotency_key_in_use)"),
              "422": _error("this Idempotency-Key was used with a different request "
                            "(idempotency_key_reused)")}
    for path, method in (("/api/v1/residents", "post"),
                         ("/api/v1/residents/{id}/status", "put")):
        op = paths[path][method]
        op["parameters"] = op.get("parameters", []) + [IDEMPOTENCY_KEY]
        op["responses"].update(reused)
    from .bulk import MAX_BATCH, MAX_BATCH_BODY
    paths["/api/v1/residents/batch"] = {"post": _op(
        f"Enroll up to {MAX_BATCH} residents at once", ["authority"],
        {"200": _json({"type": "object", "required": ["results"], "properties": {
            "enrolled": {"type": "integer"}, "already_enrolled": {"type": "integer"},
            "rejected": {"type": "integer"},
            "results": {"type": "array", "items": {"type": "object", "required": [
                "index", "outcome"], "properties": {
                "index": {"type": "integer"},
                "outcome": {"enum": ["enrolled", "already_enrolled", "rejected"]},
                "id": {"type": "string"}, "status": _ref("Status"),
                "error": {"type": "string"}, "message": {"type": "string"},
                "field": {"type": "string"}}}}}}, "one result per item, in order"),
         **_errors(400, 401, 403, 413, 503)},
        body={"type": "object", "required": ["residents"], "additionalProperties": False,
              "properties": {"residents": {"type": "array", "minItems": 1,
                                           "maxItems": MAX_BATCH,
                                           "items": _ref("Enrollment")}}},
        description=f"Each item is validated as POST /api/v1/residents validates it; bodies "
                    f"up to {MAX_BATCH_BODY} bytes.")}


def spec(config=None, modes=()) -> dict:
    """The document; ``config`` (the app's) states the configured size caps, ``modes`` the
    checkpoint modes installed (the only values ``mode`` may take)."""
    config = config or {}
    mode_names = sorted(modes)
    mode_values = {"enum": mode_names} if mode_names else \
        {"not": {}, "description": "no checkpoint mode is installed here"}
    max_code = int(config.get("MAX_CODE_LENGTH", 16 * 1024))
    scanned = {"type": "string", "minLength": 1, "maxLength": max_code,
               "description": "the text inside the QR code (chunks of one code joined by "
                              "newlines)"}
    code_body = {"type": "object", "required": ["code"], "properties": {"code": scanned}}
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
            body={"type": "object", "required": ["name", "status"],
                  "additionalProperties": False, "properties": {
                      **RESIDENT_FIELDS,
                      "ttl": {"type": "integer", "minimum": 10, "maximum": MAX_ONE_SHOT_TTL,
                              "description": "seconds (default HEALTHCODE_CODE_TTL); a one-shot "
                                             "code lives at most 30 days"},
                      "format": {"type": "string", "enum": ["png", "svg"]}},
                  **NEEDS_A_REASON})},
        "/api/v1/codes/revoke": {"post": _op(
            "Revoke a one-shot code", ["authority"],
            {"200": _json({"type": "object", "properties": {
                "revoked": {"type": "boolean"}, "hash_type": {"type": "string",
                                                              "enum": ["SIGNATURE"]},
                "hash": {"type": "string", "description": "base64 of the first 16 bytes of "
                         "the SHA-256 of the signature bytes, as the trust bundle lists it"},
                "expires_at": {"type": "string", "format": "date-time"}}},
                "revoked (again, if it already was)"),
             **_errors(400, 401, 403, 413, 422, 503)},
            body=code_body,
            description="The code then verifies as revoked; the trust bundle lists it until "
                        "it expires. Dynamic resident codes are not revoked (change the "
                        "status); 422 carries the code reason of a code that does not verify.")},
        "/api/v1/verify": {"post": _op(
            "Verify a scanned code of any supported scheme", ["checkpoint", "authority"],
            {"200": _json(_ref("Verification"),
                          "the scan worked; valid says whether the code did"),
             **_errors(400, 401, 403, 413)},
            body={"type": "object", "required": ["code"], "properties": {
                "code": scanned,
                "mode": {"type": "string", **mode_values,
                         "description": "a checkpoint mode (GET /api/v1/modes)"
                                                          "; a credential bound to a mode may "
                                                          "name only that one (else 403)"},
                "lang": {"type": "string", "description": "language of rule descriptions "
                                                          "(default: Accept-Language)"}}},
            description="With a mode (named, or bound to the credential) the code's record is "
                        "also judged by the mode's EU DCC business rules.")},
        "/api/v1/modes": {"get": _op(
            "The installed checkpoint modes", ["checkpoint", "authority"],
            {"200": _json({"type": "object", "properties": {"modes": {"type": "array"}}},
                          "name, description, country, rule types, pass status"),
             **_errors(401, 403)})},
        "/api/v1/convert": {"post": _op(
            "Convert a code into another scheme", ["partner", "authority"],
            {"200": _json(_ref("Conversion"), "the converted code"),
             **_errors(400, 401, 403, 413, 422, 503)},
            body={"type": "object", "required": ["code", "to"], "additionalProperties": False,
                  "properties": {
                "code": scanned, "to": {"type": "string"},
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
                                          "masked_name": {"type": ["string", "null"]},
                                          "reasons": {"type": "array",
                                                      "items": _ref("StatusReason")}}},
                          "colour, masked name and, for yellow and red, the reason codes "
                          "only; every lookup is audited"),
             **_errors(400, 401, 403, 429, 503)},
            body={"type": "object", "required": ["document"], "additionalProperties": False,
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
        "/api/v1/trust/bundle": {"get": _op(
            "The signed trust bundle for offline scanners", None,
            {"200": {"description": "a compact JWS (ES256, our active key's kid); its payload "
                                    "holds iat, nbf, exp, keys, issuers, shc_revocations, "
                                    "certificates, revocations, rules, modes, sources, "
                                    "warnings (README: the trust bundle)",
                     "content": {"application/jose": {"schema": {"type": "string"}}}},
             "304": {"description": "If-None-Match matched the weak ETag: unchanged"},
             **_errors(503)},
            description="Public. Poll with If-None-Match; verify the JWS with "
                        "/.well-known/jwks.json and refuse it outside nbf..exp.")},
        "/api/v1/reasons": {"get": _op("The status reasons an authority may give", None, {
            "200": _json({"type": "object"}, "reasons")})},
        "/api/v1/modes": {"get": _op(
            "The installed checkpoint modes", ["checkpoint", "authority"],
            {"200": _json({"type": "object", "required": ["modes"], "properties": {
                "modes": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "description": {"type": "string"},
                    "country": {"type": ["string", "null"]},
                    "rule_types": {"type": "array", "items": {"type": "string"}},
                    "pass_status": {"type": ["string", "null"]}}}}}},
                "each mode's name, description (in the request's language), country, rule "
                "types and the colour it grants"), **_errors(401, 403)})},
        "/api/v1/whoami": {"get": _op("The calling credential", ["any"], {
            "200": _json({"type": "object"}, "id, role, subject"), **_errors(401)})},
        "/.well-known/jwks.json": {"get": _op("Our public signing keys (JWK set)", None, {
            "200": _json({"type": "object"}, "JWK set")})},
        "/healthz": {"get": _op("The process is up", None, {
            "200": _json({"type": "object"}, "ok")})},
        "/readyz": {"get": _op("Redis reachable and a signing key loaded; the Redis topology "
                                "reached and the key ring's kids", None, {
            "200": _json({"type": "object"}, "ready"),
            "503": _json({"type": "object"}, "not ready")})},
        "/metrics": {"get": _op("Prometheus metrics of the answering worker", None, {
            "200": {"description": "text exposition format",
                    "content": {"text/plain": {}}}})},
        "/openapi.json": {"get": _op("This document", None, {
            "200": _json({"type": "object"}, "OpenAPI 3.1")})},
    }
    _scale(paths)
    return {"openapi": "3.1.0",
            "info": {"title": "healthcode", "version": __version__,
                     "description": "Signed, dynamic QR health codes and their conversion "
                                    "between regional schemes. Bearer credentials per role "
                                    "(x-roles on each operation) are created with "
                                    "`healthcode tokens create --role ROLE`."},
            "paths": paths,
            "components": {"schemas": SCHEMAS, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"}}}}
