"""The floor for the verify benchmark: the least code that does the same job.

A minimal Flask handler that decodes the same token with pyjwt and a cached key, and reads
the subject's status with one Redis HGETALL. No auth, no error handling, no online-check logic:
whatever healthcode adds on top of this is what the ratio measures.
"""
import json
import os

import jwt
import redis
from flask import Flask, jsonify, request

app = Flask(__name__)
_jwks = json.loads(os.environ["FLOOR_JWKS"])
_keys = {k["kid"]: jwt.PyJWK(k).key for k in _jwks["keys"]}
_redis = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


@app.post("/verify")
def verify():
    token = request.get_json()["code"]
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, _keys[kid], algorithms=["ES256"], issuer=os.environ["ISSUER"],
                        leeway=60)
    current = _redis.hgetall(f"floor:{{{claims['sub']}}}")
    return jsonify({"valid": int(current["sv"]) <= claims["sv"], "status": current["st"]})


@app.get("/healthz")
def healthz():
    return "ok"
