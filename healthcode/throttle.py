"""A throttle on guessing: failed authentication, counted per client address and per credential.

Bearer tokens, the sign-in page's access codes and one-time links are all secrets a guesser
could try at speed. Each failure is counted in Redis, in windows of ``AUTH_FAILURE_WINDOW``
seconds (the store's rate-limit counters, each family under its own hash
tag so that every command touches one slot; a window opens with the first failure, so its end
is an exact ``Retry-After``). Only failures are written: a genuine client costs
nothing but one read of its address's counter when its credential is not already cached.

- **Per client address** (``AUTH_FAILURES_PER_ADDRESS``): once an address has failed that many
  times in the window, its further attempts are refused with 429 and ``Retry-After`` *without
  being checked*, so a refused guess tells nothing. A token this worker has already found good
  is no guess and still passes, so a checkpoint behind the same NAT as a guesser keeps working;
  anyone else there waits for the window to end (at most ``AUTH_FAILURE_WINDOW`` seconds).
- **Per credential id** (``AUTH_FAILURES_PER_CREDENTIAL``), against guessing one credential's
  secret from many addresses: past the bound, a wrong secret for that id is answered 429
  instead of 401, and the right secret still passes. This is the lockout trade-off: refusing
  the right secret too would let anyone who knows an id (it appears in audit entries) lock its
  holder out indefinitely with a handful of requests a minute, while the secret (192 random
  bits) is what keeps the credential safe, not the count; the bound flags and slows the attack
  and writes it to the audit stream once per window.

While Redis is down nothing can be counted: the throttle then stands aside, and the credential
check itself answers (:mod:`healthcode.cache`).
"""
from __future__ import annotations

from flask import current_app, request

from .errors import RateLimited, StoreUnavailable
from .store import get_store


def _address() -> str:
    return request.remote_addr or "unknown"


def _bucket(kind: str, value: str) -> str:
    return f"{{authfail:{kind}:{value}}}"


def _window() -> int:
    return int(current_app.config["AUTH_FAILURE_WINDOW"])


def _refuse(what: str, limit: int, retry_after: int) -> RateLimited:
    return RateLimited(f"too many failed {what}: at most {limit} in {_window()} s; try again in "
                       f"{retry_after} s", retry_after=retry_after)


def check_address() -> None:
    """Before a secret is checked: refuse (429) if this address has failed too often."""
    limit = int(current_app.config["AUTH_FAILURES_PER_ADDRESS"])
    try:
        count, seconds_left = get_store().strikes(_bucket("addr", _address()))
    except StoreUnavailable:
        return
    if count >= limit:
        raise _refuse("authentications from this address", limit, seconds_left)


def failed(cred_id: str | None = None, what: str = "authentications") -> None:
    """Count a failed attempt; raise :class:`RateLimited` once a bound is passed.

    :param cred_id: the credential id the attempt named, if it named one
    """
    config = current_app.config
    window = _window()
    store = get_store()
    try:
        by_address, address_left = store.strike(_bucket("addr", _address()), window)
        by_credential, credential_left = (store.strike(_bucket("cred", cred_id), window)
                                          if cred_id else (0, 0))
    except StoreUnavailable:
        return
    per_address = int(config["AUTH_FAILURES_PER_ADDRESS"])
    per_credential = int(config["AUTH_FAILURES_PER_CREDENTIAL"])
    if by_address == per_address + 1 or by_credential == per_credential + 1:
        _audit(cred_id, by_address > per_address)
    if by_address > per_address:
        raise _refuse(f"{what} from this address", per_address, address_left)
    if by_credential > per_credential:
        raise _refuse(f"{what} for this credential", per_credential, credential_left)


def _audit(cred_id: str | None, by_address: bool) -> None:
    """Once per window and bound: an investigator needs to see the attack, not every guess."""
    try:
        get_store().audit("auth_rate_limited", actor=f"address:{_address()}",
                          credential=cred_id, bound="address" if by_address else "credential")
    except StoreUnavailable:
        pass
