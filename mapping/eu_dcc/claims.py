"""The CWT claims of a verified DCC, and the checks on them: validity windows and key usage."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from healthcode.certs import Certificate

from .cose import _MAPS, _cbor_loads, _error

CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_HCERT = -260

TYPE_KEYS = {"v": "vaccination", "t": "test", "r": "recovery"}

#: Extended key usage OIDs that allow a DSC to sign one certificate type. The ``.0.1847``
#: variant is a typo that shipped in many national DSCs and is accepted everywhere.
KEY_USAGE_OIDS = {
    "test": frozenset({"1.3.6.1.4.1.1847.2021.1.1", "1.3.6.1.4.1.0.1847.2021.1.1"}),
    "vaccination": frozenset({"1.3.6.1.4.1.1847.2021.1.2", "1.3.6.1.4.1.0.1847.2021.1.2"}),
    "recovery": frozenset({"1.3.6.1.4.1.1847.2021.1.3", "1.3.6.1.4.1.0.1847.2021.1.3"}),
}


class Claims(NamedTuple):
    """The CWT claims of a DCC: issuing country, issued-at (None when the CWT has none) and
    expiry (UTC), the payload, and deviations noticed reading them."""

    issuer: str | None
    issued_at: datetime | None
    expires: datetime
    dcc: Mapping
    notes: tuple[tuple[str, str], ...] = ()


_LAST_INSTANT = 253402300799  # 9999-12-31T23:59:59Z
_FIRST_INSTANT = -62135596800  # 0001-01-01T00:00:00Z


def _instant(value, name: str, notes: list):
    """A NumericDate (RFC 8392: an int or float, no tag) as POSIX seconds."""
    if isinstance(value, datetime):  # CBOR tag 0/1, which RFC 8392 says must be omitted
        notes.append(("cwt_time_tagged", f"the {name} claim is a tagged CBOR date"))
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise _error("malformed", "claims", f"the CWT has no numeric {name} claim")
    if value > _LAST_INSTANT:
        notes.append(("cwt_time_out_of_range", f"the {name} claim lies beyond year 9999"))
        return _LAST_INSTANT
    if value < 0:
        if value < _FIRST_INSTANT:  # -inf included: no instant at all
            raise _error("malformed", "claims", f"the {name} claim is out of range")
        notes.append(("cwt_time_out_of_range", f"the {name} claim lies before 1970"))
    return value


def _text_keys(claims: Mapping, notes: list) -> Mapping:
    """Claim keys written as text ("4" for 4), as some encoders did: read as the integers."""
    for key in claims:
        if key.__class__ is str:
            break
    else:
        return claims
    out = {}
    for key, value in claims.items():
        if isinstance(key, str) and re.fullmatch(r"-?[0-9]{1,4}", key):
            notes.append(("cwt_claim_key_text", "CWT claim keys are written as text"))
            key = int(key)
        out.setdefault(key, value)
    return out


def read_claims(payload: bytes) -> Claims:
    """The CWT claims map and the DCC inside it (claim -260, key 1)."""
    claims = _cbor_loads(payload, "claims", "CWT payload")
    if not isinstance(claims, _MAPS):
        raise _error("malformed", "claims", "the CWT payload is not a map")
    notes: list = []
    if CLAIM_HCERT not in claims:
        claims = _text_keys(claims, notes)
    hcert = claims.get(CLAIM_HCERT)
    if isinstance(hcert, _MAPS) and 1 not in hcert:
        hcert = _text_keys(hcert, notes)
    dcc = hcert.get(1) if isinstance(hcert, _MAPS) else None
    if not isinstance(dcc, _MAPS):
        raise _error("malformed", "claims", "the CWT holds no health certificate (-260/1)")
    issuer = claims.get(CLAIM_ISS)
    if issuer is not None and not isinstance(issuer, str):
        raise _error("malformed", "claims", "the iss claim is not text")
    if claims.get(CLAIM_IAT) is None:
        notes.append(("cwt_no_iat", "the CWT has no iat claim"))
        issued_at = None
    else:
        issued_at = _instant(claims.get(CLAIM_IAT), "iat", notes)
    expires = _instant(claims.get(CLAIM_EXP), "exp", notes)
    if issued_at is not None and expires < issued_at:
        raise _error("malformed", "claims", "the code expires before it was issued")
    return Claims(issuer, None if issued_at is None else _utc(issued_at), _utc(expires), dcc,
                  tuple(dict.fromkeys(notes)) if notes else ())


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _utc(stamp) -> datetime:
    if stamp >= 0:  # the common case, several times cheaper than the timedelta below
        return datetime.fromtimestamp(stamp, timezone.utc)
    return _EPOCH + timedelta(seconds=stamp)


def certificate_type(dcc: Mapping) -> str:
    """``vaccination``, ``test`` or ``recovery``: a DCC holds exactly one non-empty group.

    A group that is ``null`` or an empty list counts as absent (some issuers write all three
    keys); :func:`to_record` reports the empty ones.
    """
    get = dcc.get
    present = [key for key in ("v", "t", "r") if get(key) is not None and get(key) != []]
    if len(present) != 1:
        raise _error("malformed", "claims",
                     "a DCC must hold exactly one of v, t and r" if present else
                     "the DCC holds no vaccination, test or recovery")
    entries = dcc[present[0]]
    if not isinstance(entries, (list, tuple)) or not entries:
        raise _error("malformed", "claims", f"the DCC's {present[0]} group is not a list")
    return TYPE_KEYS[present[0]]


def check_validity(claims: Claims, certificate: Certificate, at: datetime) -> None:
    """``at`` lies inside both the code's window and its signer's (module docstring)."""
    if claims.issued_at is not None and at < claims.issued_at:
        raise _error("not_yet_valid", "validity", "the code was issued after the checking time")
    if at > claims.expires:
        raise _error("expired", "validity", "the code has expired")
    if at < certificate.not_before:
        raise _error("not_yet_valid", "validity",
                     "the signer certificate is not valid yet at the checking time")
    if at > certificate.not_after:
        raise _error("expired", "validity", "the signer certificate has expired")
    if claims.issued_at is not None and claims.issued_at > certificate.not_after:
        raise _error("expired", "validity",
                     "the code was issued after its signer certificate expired")


def validity_notes(claims: Claims, certificate: Certificate) -> tuple[tuple[str, str], ...]:
    """The issuer's duties the hcert specification names and this code breaks (reported)."""
    notes = []
    if claims.issued_at is not None and claims.issued_at < certificate.not_before:
        notes.append(("dcc_iat_before_dsc", "the code says it was issued before its signer "
                                            "certificate became valid"))
    if claims.expires > certificate.not_after:
        notes.append(("dcc_exp_beyond_dsc", "the code claims validity beyond its signer "
                                            "certificate's; it is valid until the "
                                            "certificate's end"))
    return tuple(notes)


_DCC_OIDS = frozenset().union(*KEY_USAGE_OIDS.values())


def check_key_usage(certificate: Certificate, cert_type: str) -> None:
    """The DSC's extended key usage allows signing ``cert_type`` (module docstring)."""
    usage = certificate.extended_key_usage
    if not usage or _DCC_OIDS.isdisjoint(usage):  # no DCC OID: no restriction (hcert, CWA)
        return
    if KEY_USAGE_OIDS[cert_type].isdisjoint(usage):
        raise _error("wrong_key_usage", "key_usage",
                     f"the signer certificate may not sign {cert_type} certificates")
