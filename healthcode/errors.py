"""One error tree for the whole service.

Every failure a caller can cause or meet carries a short, stable ``reason`` (machine-readable,
part of the public contract), a human ``message`` and the HTTP status the API answers with.
Library exceptions (pyjwt, redis, cbor2, cryptography) are wrapped into this tree inside the
module that calls the library, so views never see them.
"""
from __future__ import annotations

#: Reasons a scanned or converted code can fail with (DESIGN.md, **contract**).
CODE_REASONS = frozenset(
    {
        "malformed",
        "unsupported_scheme",
        "bad_signature",
        "unknown_key",
        "untrusted_issuer",
        "expired",
        "not_yet_valid",
        "wrong_key_usage",
        "revoked",
        "superseded",
        "policy_refused",
        "too_large",
    }
)


class HealthCodeError(Exception):
    """Root of every error the service raises on purpose."""

    reason = "error"
    status = 400

    def __init__(self, message: str | None = None, *, reason: str | None = None,
                 status: int | None = None, **detail):
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status
        self.message = message or self.__class__.__doc__ or self.reason
        self.detail = detail
        super().__init__(self.message)

    def to_dict(self) -> dict:
        body = {"error": self.reason, "message": self.message}
        body.update(self.detail)
        return body


class CodeError(HealthCodeError):
    """A code could not be decoded, verified or converted."""

    status = 422

    def __init__(self, reason: str, message: str | None = None, **detail):
        if reason not in CODE_REASONS:
            raise ValueError(f"unknown code reason {reason!r}: add it to CODE_REASONS first")
        super().__init__(message or reason.replace("_", " "), reason=reason, **detail)


class BadRequest(HealthCodeError):
    """The request is not what this endpoint accepts."""

    reason = "bad_request"
    status = 400


class InvalidField(BadRequest):
    """A field is missing or has a value this endpoint does not accept."""

    reason = "invalid_field"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", field=field)


class TooDeep(BadRequest):
    """The JSON body nests deeper than any request of this API needs (refused unparsed)."""

    reason = "too_deep"


class PayloadTooLarge(HealthCodeError):
    """The request body or code is larger than the configured cap."""

    reason = "too_large"
    status = 413


class Unauthorized(HealthCodeError):
    """No credential, or one this service does not know."""

    reason = "unauthorized"
    status = 401


class Forbidden(HealthCodeError):
    """The credential is valid but its role may not do this."""

    reason = "forbidden"
    status = 403


class NotFound(HealthCodeError):
    """No such resource."""

    reason = "not_found"
    status = 404


class Conflict(HealthCodeError):
    """The resource already exists."""

    reason = "conflict"
    status = 409


class IdempotencyKeyInUse(Conflict):
    """A request with this Idempotency-Key is still being processed; retry later."""

    reason = "idempotency_key_in_use"


class IdempotencyKeyReused(HealthCodeError):
    """This Idempotency-Key was used before with a different request."""

    reason = "idempotency_key_reused"
    status = 422


class RateLimited(HealthCodeError):
    """Too many requests for this credential; try again later."""

    reason = "rate_limited"
    status = 429


class StoreUnavailable(HealthCodeError):
    """The state store (Redis) cannot be reached; the write was not made."""

    reason = "store_unavailable"
    status = 503


class StoreMigrationNeeded(HealthCodeError):
    """The store holds data in an earlier release's layout: run `healthcode store migrate`."""

    reason = "store_migration_needed"
    status = 503


class SignerUnavailable(HealthCodeError):
    """Codes of this scheme cannot be issued now: its signer is misconfigured or expired."""

    reason = "signer_unavailable"
    status = 503


class ConfigurationError(HealthCodeError):
    """The service is configured wrongly; raised at start-up, never per request."""

    reason = "configuration_error"
    status = 500


class RequestTimeout(HealthCodeError):
    """The request body did not arrive within the configured time."""

    reason = "request_timeout"
    status = 408


class Overloaded(HealthCodeError):
    """This worker is at its in-flight cap; retry after the time in Retry-After."""

    reason = "overloaded"
    status = 503
class TrustListError(ConfigurationError):
    """A trust list cannot be imported: unreadable, of no known format, or holding a corrupt
    entry. Nothing of it is imported (imports are all or nothing)."""

    reason = "invalid_trust_list"


class TrustSignatureError(TrustListError):
    """A trust list's signature (detached, or a master list's own CMS signature) does not check
    out against the configured signer: nothing of it is imported."""

    reason = "bad_trust_signature"
