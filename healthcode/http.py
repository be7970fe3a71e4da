"""Small request/response helpers shared by the API views."""
from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, request

from .errors import BadRequest, InvalidField, PayloadTooLarge


def json_body(limit: int | None = None) -> dict:
    """The request's JSON object, with clear errors for everything else.

    :param limit: the body cap in bytes, where an endpoint takes more than ``MAX_BODY``.
    """
    if limit is None:
        limit = current_app.config["MAX_BODY"]
    elif request.max_content_length is None or request.max_content_length < limit:
        request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    if not raw:
        raise BadRequest("the body must be a JSON object", reason="not_json")
    data = request.get_json(silent=True, force=True)
    if data is None:
        raise BadRequest("the body is not valid JSON", reason="not_json")
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", reason="not_json")
    return data


def field(data: dict, name: str, kind: type | tuple = str, required: bool = True,
          default: Any = None) -> Any:
    if name not in data or data[name] is None:
        if required:
            raise InvalidField(name, "required")
        return default
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidField(name, f"expected {expected}")
    return value


def created(body: dict, location: str | None = None):
    response = jsonify(body)
    response.status_code = 201
    if location:
        response.headers["Location"] = location
    return response
