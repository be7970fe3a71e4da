"""Public key discovery: ``/.well-known/jwks.json`` (public keys only)."""
from flask import Blueprint, jsonify

from ..residents import get_ring

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")


@bp.get("/jwks.json")
def jwks():
    response = jsonify(get_ring().jwks())
    # verifiers may cache keys briefly; a rotation publishes the new key before it signs
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
